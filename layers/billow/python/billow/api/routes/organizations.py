"""Lago's organization settings: PUT /api/v1/organizations."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from billow.api.context import deps, organization_id
from billow.api.responses.organizations import OrganizationResponse
from billow.services import organizations as service

router = Router()


class OrganizationBody(BaseModel):
    organization: service.OrganizationInput


@router.put("/api/v1/organizations")
def update_organization(body: Annotated[OrganizationBody, Body()]) -> OrganizationResponse:
    updated = service.update_organization(deps(), organization_id(router), body.organization)
    return OrganizationResponse.model_validate({"organization": service.present(deps(), updated)})
