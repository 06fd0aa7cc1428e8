"""Lago payment methods: /api/v1/customers/{external_customer_id}/payment_methods."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from billow.api.context import deps, organization_id
from billow.api.pagination import DEFAULT_PER_PAGE, Page, PerPage, paginate
from billow.api.responses.customers import PaymentMethodResponse, PaymentMethodsPage
from billow.services import payment_methods

router = Router()
BASE = "/api/v1/customers/<external_customer_id>/payment_methods"


@router.get(BASE)
def list_payment_methods(
    external_customer_id: str, page: Page = 1, per_page: PerPage = DEFAULT_PER_PAGE
) -> PaymentMethodsPage:
    found = payment_methods.list_payment_methods(
        deps(), organization_id(router), external_customer_id
    )
    shown, meta = paginate(found, page, per_page)
    return PaymentMethodsPage.model_validate(
        {"payment_methods": [method.as_lago() for method in shown], "meta": meta}
    )


@router.put(f"{BASE}/<lago_id>/set_as_default")
def set_payment_method_as_default(external_customer_id: str, lago_id: str) -> PaymentMethodResponse:
    method = payment_methods.set_as_default(
        deps(), organization_id(router), external_customer_id, lago_id
    )
    return PaymentMethodResponse.model_validate({"payment_method": method.as_lago()})


@router.delete(f"{BASE}/<lago_id>")
def delete_payment_method(external_customer_id: str, lago_id: str) -> PaymentMethodResponse:
    method = payment_methods.delete_payment_method(
        deps(), organization_id(router), external_customer_id, lago_id
    )
    return PaymentMethodResponse.model_validate({"payment_method": method.as_lago()})
