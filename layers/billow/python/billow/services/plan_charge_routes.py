"""One charge of a plan at a time (Lago's ``/plans/{code}/charges``), by the charge's code.

Each request is a plan update with the plan's whole list of charges changed by one, so it
goes through the same checks, counts, webhook (``plan.updated``) and sync as
``PUT /plans/{code}`` with ``charges``.
"""

from __future__ import annotations

from typing import Any

from billow.composition import Dependencies
from billow.domain.errors import NotFound, ValidationFailed
from billow.domain.usage import Charge
from billow.services.lookups import get_plan
from billow.services.plan_charges import ChargeFilterInput, ChargeInput
from billow.services.plans import PlanInput, update_plan


def as_input(charge: Charge) -> ChargeInput:
    """A saved charge as the plan update that keeps it as it is would send it."""
    return ChargeInput.model_validate(
        {
            "id": charge.lago_id,
            "billable_metric_id": charge.billable_metric_id,
            "code": charge.code,
            "charge_model": charge.charge_model,
            "invoice_display_name": charge.invoice_display_name,
            "pay_in_advance": charge.pay_in_advance,
            "invoiceable": charge.invoiceable,
            "prorated": charge.prorated,
            "min_amount_cents": charge.min_amount_cents,
            "properties": charge.properties,
            "filters": [
                ChargeFilterInput(
                    invoice_display_name=item.invoice_display_name,
                    properties=item.properties,
                    values=item.values,
                )
                for item in charge.filters
            ],
            "tax_codes": charge.tax_codes,
        }
    )


def _charge(charges: list[Charge], charge_code: str) -> Charge:
    found = next((charge for charge in charges if charge.code == charge_code), None)
    if found is None:
        raise NotFound("charge")
    return found


def list_charges(deps: Dependencies, organization_id: str, code: str) -> list[Charge]:
    return get_plan(deps, organization_id, code).charges


def get_charge(deps: Dependencies, organization_id: str, code: str, charge_code: str) -> Charge:
    return _charge(get_plan(deps, organization_id, code).charges, charge_code)


def _replace(
    deps: Dependencies, organization_id: str, code: str, charges: list[ChargeInput]
) -> list[Charge]:
    return update_plan(deps, organization_id, code, PlanInput(charges=charges)).charges


def create_charge(
    deps: Dependencies, organization_id: str, code: str, given: ChargeInput
) -> Charge:
    """A charge added to the plan; it needs a code of its own to be found by later."""
    plan = get_plan(deps, organization_id, code)
    if not given.code:
        raise ValidationFailed({"code": ["value_is_mandatory"]})
    if any(charge.code == given.code for charge in plan.charges):
        raise ValidationFailed({"code": ["value_already_exist"]})
    new = given.model_copy(update={"id": None})
    saved = _replace(deps, organization_id, code, [*map(as_input, plan.charges), new])
    return _charge(saved, given.code)


def update_charge(
    deps: Dependencies, organization_id: str, code: str, charge_code: str, changes: dict[str, Any]
) -> Charge:
    """The fields sent replace the charge's; the charge keeps its id (and its usage)."""
    plan = get_plan(deps, organization_id, code)
    before = _charge(plan.charges, charge_code)
    merged = ChargeInput.model_validate(
        {**as_input(before).model_dump(exclude_none=True), **changes, "id": before.lago_id}
    )
    inputs = [merged if c.lago_id == before.lago_id else as_input(c) for c in plan.charges]
    saved = _replace(deps, organization_id, code, inputs)
    return _charge(saved, merged.code or charge_code)


def delete_charge(deps: Dependencies, organization_id: str, code: str, charge_code: str) -> Charge:
    plan = get_plan(deps, organization_id, code)
    gone = _charge(plan.charges, charge_code)
    _replace(
        deps,
        organization_id,
        code,
        [as_input(c) for c in plan.charges if c.lago_id != gone.lago_id],
    )
    return gone
