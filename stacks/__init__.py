"""CDK stacks that turn Billow's topology declaration into AWS resources."""

from stacks.billow_stack import BillowStack

__all__ = ["BillowStack"]
