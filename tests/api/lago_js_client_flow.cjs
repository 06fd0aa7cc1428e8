// Drives Billow with Lago's official JavaScript client; run by test_lago_js_client.py.
//
//   node lago_js_client_flow.cjs <api_url> <api_key>
//
// The client comes from .venv/lago-js-client (NODE_PATH). Prints what it observed as JSON.
"use strict";

const { Client, getLagoError } = require("lago-javascript-client");

/** The Lago error of a call that must fail: its status and body. */
async function refusal(call) {
  try {
    await call();
  } catch (error) {
    return { status: error.status, body: await getLagoError(error) };
  }
  throw new Error("the call succeeded");
}

async function main(apiUrl, apiKey) {
  const client = Client(apiKey, { baseUrl: `${apiUrl}/api/v1` });
  const seen = {};

  const created = await client.customers.createCustomer({
    customer: {
      external_id: "js-1",
      name: "Through JavaScript",
      email: "js@example.test",
      country: "FR",
      currency: "EUR",
    },
  });
  seen.customer = created.data.customer.external_id;
  seen.sync_with_provider = created.data.customer.billing_configuration.sync_with_provider;
  const customers = await client.customers.findAllCustomers({ per_page: 10 });
  seen.customers = customers.data.customers.map((customer) => customer.external_id);

  await client.plans.createPlan({
    plan: {
      name: "JS plan",
      code: "js-plan",
      interval: "monthly",
      amount_cents: 1500,
      amount_currency: "EUR",
      pay_in_advance: true,
    },
  });
  seen.plan = (await client.plans.findPlan("js-plan")).data.plan.amount_cents;
  await client.subscriptions.createSubscription({
    subscription: {
      external_customer_id: "js-1",
      plan_code: "js-plan",
      external_id: "js-sub",
      billing_time: "anniversary",
    },
  });

  await client.addOns.createAddOn({
    add_on: { name: "Setup", code: "js-setup", amount_cents: 700, amount_currency: "EUR" },
  });
  const oneOff = (
    await client.invoices.createInvoice({
      invoice: { external_customer_id: "js-1", fees: [{ add_on_code: "js-setup", units: 2 }] },
    })
  ).data.invoice;
  const free = (
    await client.invoices.createInvoice({
      invoice: {
        external_customer_id: "js-1",
        fees: [{ add_on_code: "js-setup", unit_amount_cents: 0 }],
      },
    })
  ).data.invoice;
  seen.one_off = [oneOff.invoice_type, oneOff.total_amount_cents, oneOff.payment_status];
  seen.free = free.payment_status;

  const listed = async (query) =>
    (await client.invoices.findAllInvoices(query)).data.invoices.map((i) => i.lago_id);
  seen.lists = {
    everything: await listed({}),
    one_off: await listed({ external_customer_id: "js-1", invoice_type: "one_off" }),
    subscription: await listed({ invoice_type: "subscription" }),
    paid: await listed({ "statuses[]": ["finalized"], "payment_statuses[]": ["succeeded"] }),
    searched: await listed({ search_term: oneOff.number }),
    overdue: await listed({ payment_overdue: true }),
    dated: await listed({ issuing_date_from: oneOff.issuing_date, currency: "EUR" }),
    nobody: await listed({ external_customer_id: "nobody" }),
  };
  seen.ids = { one_off: oneOff.lago_id, free: free.lago_id };

  seen.retry_paid = await refusal(() => client.invoices.retryPayment(free.lago_id));
  seen.void_paid = await refusal(() => client.invoices.voidInvoice(free.lago_id));
  seen.voided = (await client.invoices.voidInvoice(oneOff.lago_id)).data.invoice.status;
  seen.unknown_plan = await refusal(() =>
    client.coupons.createCoupon({
      coupon: {
        name: "Limited",
        code: "limited",
        coupon_type: "fixed_amount",
        amount_cents: 100,
        amount_currency: "EUR",
        frequency: "once",
        expiration: "no_expiration",
        applies_to: { plan_codes: ["nope"] },
      },
    }),
  );

  const organization = await client.organizations.updateOrganization({
    organization: {
      email: "billing@js.test",
      country: "DE",
      default_currency: "EUR",
      net_payment_term: 14,
      webhook_url: "https://hooks.js.test/lago",
      email_settings: ["invoice.finalized"],
      billing_configuration: { invoice_footer: "Danke" },
    },
  });
  seen.organization = organization.data.organization;
  seen.invalid_organization = await refusal(() =>
    client.organizations.updateOrganization({ organization: { country: "XX" } }),
  );
  return seen;
}

main(process.argv[2], process.argv[3]).then(
  (seen) => process.stdout.write(JSON.stringify(seen)),
  (error) => {
    // The client throws the HTTP response of a refused call, with Lago's error body.
    const told = error && error.stack ? error.stack : `${error.status} ${error.url}`;
    process.stderr.write(`${told} ${JSON.stringify(error && error.error)}\n`);
    process.exit(1);
  },
);
