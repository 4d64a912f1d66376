//! HTTP handlers, one module per area, and the views and access rules they share.

pub mod callbacks;
pub mod collection;
pub mod contracts;
pub mod ownership;
pub mod payments;
pub mod products;
pub mod quotes;
pub mod reports;
pub mod simulation;

use chrono::{DateTime, NaiveDate, Utc};
use miliki_platform::auth::Role;
use miliki_platform::money::Currency;
use miliki_platform::ApiError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::book::{Book, Line};
use crate::domain::contract::ContractStatus;
use crate::domain::product::{Component, ProductTerms};
use crate::money::{MoneyRequest, PaybillPayment, RequestStatus};
use crate::state::{AppState, Caller};
use crate::store::{self, ContractRecord, PaymentRecord, ProductRecord};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    /// `active` or `retired`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub terms: ProductTerms,
}

impl From<&ProductRecord> for ProductView {
    fn from(p: &ProductRecord) -> Self {
        Self {
            id: p.id,
            status: p.status.clone(),
            created_at: p.created_at,
            retired_at: p.retired_at,
            terms: p.terms.clone(),
        }
    }
}

/// A contract in a list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractSummary {
    pub id: Uuid,
    pub account_number: String,
    pub status: ContractStatus,
    pub application_id: Option<Uuid>,
    pub customer_id: Uuid,
    pub vehicle_id: Uuid,
    pub reservation_id: Option<Uuid>,
    pub product_id: Uuid,
    pub currency: Currency,
    pub price_minor: i64,
    pub deposit_minor: i64,
    pub principal_minor: i64,
    pub processing_fee_minor: i64,
    pub total_interest_minor: i64,
    pub total_payable_minor: i64,
    pub installment_minor: i64,
    pub term_periods: i64,
    pub signed_date: NaiveDate,
    /// The activation date, from which the schedule runs.
    pub start_date: Option<NaiveDate>,
    pub days_past_due: i64,
    pub bucket: String,
    pub overdue_minor: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&ContractRecord> for ContractSummary {
    fn from(c: &ContractRecord) -> Self {
        Self {
            id: c.id,
            account_number: c.account_number.clone(),
            status: c.status,
            application_id: c.application_id,
            customer_id: c.customer_id,
            vehicle_id: c.vehicle_id,
            reservation_id: c.reservation_id,
            product_id: c.product_id,
            currency: c.currency,
            price_minor: c.price_minor,
            deposit_minor: c.deposit_minor,
            principal_minor: c.principal_minor,
            processing_fee_minor: c.processing_fee_minor,
            total_interest_minor: c.total_interest_minor,
            total_payable_minor: c.total_payable_minor,
            installment_minor: c.installment_minor,
            term_periods: c.term_periods,
            signed_date: c.signed_date,
            start_date: c.start_date,
            days_past_due: c.days_past_due,
            bucket: c.bucket.clone(),
            overdue_minor: c.overdue_minor,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

miliki_platform::string_enum!(
    /// Where an installment stands today.
    InstallmentState {
        Upcoming => "upcoming",
        Due => "due",
        PartiallyPaid => "partially_paid",
        Paid => "paid",
        Overdue => "overdue",
    }
);

/// Per-component amounts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Parts {
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub fees_minor: i64,
    pub penalties_minor: i64,
}

impl Parts {
    fn of(a: &[i64; 4]) -> Self {
        Self {
            principal_minor: a[Component::Principal.index()],
            interest_minor: a[Component::Interest.index()],
            fees_minor: a[Component::Fees.index()],
            penalties_minor: a[Component::Penalties.index()],
        }
    }
}

/// One installment of a contract's schedule. Number 0 is the deposit (as
/// principal) and the processing fee (as fees), due at signing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InstallmentView {
    pub number: u32,
    pub due_date: NaiveDate,
    pub due: Parts,
    pub paid: Parts,
    pub total_minor: i64,
    pub paid_minor: i64,
    /// Written off or waived.
    pub waived_minor: i64,
    pub outstanding_minor: i64,
    pub state: InstallmentState,
}

fn state_of(line: &Line, today: NaiveDate) -> InstallmentState {
    if line.total_outstanding() == 0 {
        InstallmentState::Paid
    } else if line.due_date < today {
        InstallmentState::Overdue
    } else if line.total_paid() > 0 {
        InstallmentState::PartiallyPaid
    } else if line.due_date == today {
        InstallmentState::Due
    } else {
        InstallmentState::Upcoming
    }
}

impl InstallmentView {
    pub fn new(line: &Line, today: NaiveDate) -> Self {
        Self {
            number: line.number,
            due_date: line.due_date,
            due: Parts::of(&line.due),
            paid: Parts::of(&line.paid),
            total_minor: line.total_due(),
            paid_minor: line.total_paid(),
            waived_minor: line.waived.iter().sum(),
            outstanding_minor: line.total_outstanding(),
            state: state_of(line, today),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Balances {
    pub outstanding_principal_minor: i64,
    pub outstanding_interest_minor: i64,
    pub outstanding_fees_minor: i64,
    pub outstanding_penalties_minor: i64,
    pub outstanding_total_minor: i64,
    pub overdue_minor: i64,
    /// Received and waiting to be applied as installments fall due.
    pub credit_minor: i64,
    pub next_due_date: Option<NaiveDate>,
    pub next_due_minor: i64,
    pub paid_to_date_minor: i64,
    pub days_past_due: i64,
    pub bucket: String,
}

/// A contract with its product snapshot, schedule and balances.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractDetail {
    #[serde(flatten)]
    pub contract: ContractSummary,
    pub product: ProductTerms,
    pub schedule: Vec<InstallmentView>,
    pub balances: Balances,
}

impl ContractDetail {
    pub fn new(c: &ContractRecord, book: &Book, today: NaiveDate) -> Self {
        let next = book
            .lines
            .iter()
            .find(|l| l.total_outstanding() > 0 && l.due_date >= today);
        let paused = c.status == ContractStatus::Paused;
        Self {
            contract: ContractSummary::from(c),
            product: c.product.clone(),
            schedule: book
                .lines
                .iter()
                .map(|l| InstallmentView::new(l, today))
                .collect(),
            balances: Balances {
                outstanding_principal_minor: book.outstanding_of(Component::Principal),
                outstanding_interest_minor: book.outstanding_of(Component::Interest),
                outstanding_fees_minor: book.outstanding_of(Component::Fees),
                outstanding_penalties_minor: book.outstanding_of(Component::Penalties),
                outstanding_total_minor: book.outstanding(),
                overdue_minor: if paused {
                    c.overdue_minor
                } else if c.status.accrues_arrears() {
                    book.overdue_minor(today)
                } else {
                    0
                },
                credit_minor: book.credit_minor,
                next_due_date: next.map(|l| l.due_date),
                next_due_minor: next.map(Line::total_outstanding).unwrap_or(0),
                paid_to_date_minor: book.lines.iter().map(Line::total_paid).sum(),
                days_past_due: c.days_past_due,
                bucket: c.bucket.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    /// Absent for paybill money no contract has claimed (suspense).
    pub contract_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub amount_minor: i64,
    pub currency: Currency,
    /// `cash`, `mpesa`, `mtn_momo` or `mpesa_paybill`.
    pub method: String,
    /// `pending` (a prompt is out), `succeeded` (in the ledger), `failed`,
    /// `reversed`; paybill money not on a contract: `confirming`, `suspense`, `rejected`.
    pub status: String,
    /// Days past due of the contract when the payment came in.
    pub days_late: i64,
    /// Who took or asked for it; absent when the scheduler or the paybill did.
    pub received_by: Option<Uuid>,
    pub received_at: DateTime<Utc>,
    pub reversed_at: Option<DateTime<Utc>>,
    pub reversal_reason: Option<String>,
    /// The rail's result code and text (mobile money), e.g. `1032` "Request cancelled by user".
    pub rail_code: Option<String>,
    pub rail_message: Option<String>,
    /// The rail's receipt (MpesaReceiptNumber, TransID, MoMo financialTransactionId).
    pub receipt: Option<String>,
}

impl From<&PaymentRecord> for PaymentView {
    fn from(p: &PaymentRecord) -> Self {
        Self {
            id: p.id,
            contract_id: Some(p.contract_id),
            customer_id: Some(p.customer_id),
            amount_minor: p.amount_minor,
            currency: p.currency,
            method: p.method.clone(),
            status: match p.status.as_str() {
                "received" => "succeeded".into(),
                other => other.to_owned(),
            },
            days_late: p.days_late,
            received_by: (p.received_by != crate::collect::SYSTEM).then_some(p.received_by),
            received_at: p.received_at,
            reversed_at: p.reversed_at,
            reversal_reason: p.reversal_reason.clone(),
            rail_code: None,
            rail_message: None,
            receipt: None,
        }
    }
}

impl PaymentView {
    /// A money request not (yet) in the ledger, or the ledger payment it became.
    pub fn of_request(r: &MoneyRequest, ledger: Option<&PaymentRecord>) -> Self {
        let mut view = match ledger {
            Some(p) => Self::from(p),
            None => Self {
                id: r.id,
                contract_id: Some(r.contract_id),
                customer_id: Some(r.customer_id),
                amount_minor: r.amount_minor,
                currency: r.currency,
                method: r.rail.as_str().to_owned(),
                status: match r.status {
                    RequestStatus::Succeeded => "succeeded",
                    RequestStatus::Failed => "failed",
                    _ => "pending",
                }
                .into(),
                days_late: 0,
                received_by: r.requested_by,
                received_at: r.created_at,
                reversed_at: None,
                reversal_reason: None,
                rail_code: None,
                rail_message: None,
                receipt: None,
            },
        };
        view.rail_code = r.result_code.clone();
        view.rail_message = r.result_text.clone();
        view.receipt = r.receipt.clone();
        view
    }

    /// Paybill money, in the ledger or not.
    pub fn of_paybill(p: &PaybillPayment, ledger: Option<&PaymentRecord>) -> Self {
        let mut view = match ledger {
            Some(l) => Self::from(l),
            None => Self {
                id: p.id,
                contract_id: p.contract_id,
                customer_id: None,
                amount_minor: p.amount_minor,
                currency: p.currency,
                method: "mpesa_paybill".into(),
                status: p.status.as_str().into(),
                days_late: 0,
                received_by: None,
                received_at: p.received_at,
                reversed_at: None,
                reversal_reason: None,
                rail_code: None,
                rail_message: p.note.clone(),
                receipt: None,
            },
        };
        view.receipt = Some(p.trans_id.clone());
        view
    }
}

/// A payment with the state of its contract afterwards.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentReceipt {
    pub payment: PaymentView,
    pub contract: ContractDetail,
}

/// Whether `caller` may see things of `customer`: the customer, the agent
/// who onboarded them, or an admin.
pub async fn may_see_customer(
    state: &AppState,
    caller: &Caller,
    customer: Uuid,
) -> Result<bool, ApiError> {
    Ok(match caller.role {
        Role::Admin => true,
        Role::Customer => caller.id == customer,
        Role::Agent => {
            store::onboarded_by(state.deps.db.reader(), customer).await? == Some(caller.id)
        }
    })
}

/// A contract the caller may see; others get 404 (its existence is not theirs to learn).
pub async fn visible_contract(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<ContractRecord, ApiError> {
    let mut conn = state.deps.db.reader().acquire().await?;
    let c = store::find_contract(&mut conn, id, "")
        .await?
        .ok_or(ApiError::NotFound("contract"))?;
    if may_see_customer(state, caller, c.customer_id).await? {
        Ok(c)
    } else {
        Err(ApiError::NotFound("contract"))
    }
}

/// A required free-text reason, trimmed, at most 500 characters.
pub fn reason(v: &mut miliki_platform::problem::Validator, raw: &Option<String>) -> String {
    match v.required("reason", raw) {
        Some(r) if r.chars().count() > 500 => {
            v.error("reason", "must be at most 500 characters");
            String::new()
        }
        Some(r) => r.to_owned(),
        None => String::new(),
    }
}
