//! Every event type any service publishes, with its payload. Payloads carry
//! ids and facts, never personal data such as phone numbers or names in the
//! clear: the one exception, a phone and its one-time code on their way to the
//! SMS channel, travels sealed with the platform's data keys.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventPayload;

macro_rules! event {
    ($name:ident, $type:literal, $subject:ident) => {
        impl EventPayload for $name {
            const TYPE: &'static str = $type;
            fn subject(&self) -> Option<String> {
                Some(self.$subject.to_string())
            }
        }
    };
}

/// Events of the users service.
pub mod users {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct UserRegistered {
        pub user_id: Uuid,
        pub role: String,
        /// The agent who onboarded the customer, if one did.
        pub onboarded_by: Option<Uuid>,
    }
    event!(UserRegistered, "users.user.registered.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct UserSuspended {
        pub user_id: Uuid,
        pub suspended_by: Uuid,
        pub reason: String,
    }
    event!(UserSuspended, "users.user.suspended.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct UserReinstated {
        pub user_id: Uuid,
        pub reinstated_by: Uuid,
        pub reason: String,
    }
    event!(UserReinstated, "users.user.reinstated.v1", user_id);

    /// An account's credentials changed: it was created, suspended,
    /// reinstated, or its password or role changed. Every service keeps the
    /// latest `version` per account and refuses tokens minted under another.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct CredentialsChanged {
        pub user_id: Uuid,
        pub role: String,
        pub version: i64,
        pub active: bool,
    }
    event!(
        CredentialsChanged,
        "users.user.credentials_changed.v1",
        user_id
    );

    /// A one-time code was issued for an account's phone (at registration, on
    /// a resend, or when the phone changed). The phone and the code are sealed
    /// (AES-256-GCM, base64) under the fields [`PHONE_FIELD`] and
    /// [`CODE_FIELD`], so only services holding the data keys can read them.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PhoneCodeIssued {
        pub user_id: Uuid,
        pub phone_sealed: String,
        pub code_sealed: String,
        pub expires_at: chrono::DateTime<chrono::Utc>,
    }
    event!(PhoneCodeIssued, "users.phone.code_issued.v1", user_id);

    /// The field name a sealed phone in an event is encrypted under.
    pub const PHONE_FIELD: &str = "event.phone";
    /// The field name a sealed one-time code is encrypted under.
    pub const CODE_FIELD: &str = "event.phone_code";

    /// An account's phone was proven to be its owner's: by the code, or by the
    /// operator who created the account. `phone_sealed` as in [`PhoneCodeIssued`].
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PhoneVerified {
        pub user_id: Uuid,
        pub phone_sealed: String,
        /// Who entered the code: the customer, or the agent beside them; `None`
        /// for an account the operator created.
        pub verified_by: Option<Uuid>,
    }
    event!(PhoneVerified, "users.phone.verified.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct KycSubmitted {
        pub submission_id: Uuid,
        pub user_id: Uuid,
        pub submitted_by: Uuid,
        pub document_type: String,
    }
    event!(KycSubmitted, "users.kyc.submitted.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct KycApproved {
        pub submission_id: Uuid,
        pub user_id: Uuid,
        pub reviewed_by: Uuid,
    }
    event!(KycApproved, "users.kyc.approved.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct KycRejected {
        pub submission_id: Uuid,
        pub user_id: Uuid,
        pub reviewed_by: Uuid,
        pub reason: String,
    }
    event!(KycRejected, "users.kyc.rejected.v1", user_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct KycResubmissionRequested {
        pub submission_id: Uuid,
        pub user_id: Uuid,
        pub reviewed_by: Uuid,
        pub reason: String,
    }
    event!(
        KycResubmissionRequested,
        "users.kyc.resubmission_requested.v1",
        user_id
    );
}

/// Events of the vehicles service.
pub mod vehicles {
    use super::*;
    use chrono::{DateTime, Utc};

    /// A vehicle joined the inventory.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct VehicleListed {
        pub vehicle_id: Uuid,
        pub vehicle_type: String,
        pub make: String,
        pub model: String,
        pub year: i32,
        pub branch: String,
        pub price_minor: i64,
        pub currency: String,
        pub status: String,
    }
    event!(VehicleListed, "vehicles.vehicle.listed.v1", vehicle_id);

    /// A vehicle's facts changed; `fields` names which.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct VehicleUpdated {
        pub vehicle_id: Uuid,
        pub version: i64,
        pub fields: Vec<String>,
        pub updated_by: Uuid,
    }
    event!(VehicleUpdated, "vehicles.vehicle.updated.v1", vehicle_id);

    /// A vehicle moved along its lifecycle.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct VehicleStatusChanged {
        pub vehicle_id: Uuid,
        pub from: String,
        pub to: String,
        /// Who moved it; absent when the system did (a reservation expiring).
        pub actor_id: Option<Uuid>,
        pub reason: String,
        /// The customer the vehicle is now held for, if any.
        pub held_by: Option<Uuid>,
    }
    event!(
        VehicleStatusChanged,
        "vehicles.vehicle.status_changed.v1",
        vehicle_id
    );

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ReservationCreated {
        pub reservation_id: Uuid,
        pub vehicle_id: Uuid,
        pub customer_id: Uuid,
        pub expires_at: DateTime<Utc>,
    }
    event!(
        ReservationCreated,
        "vehicles.reservation.created.v1",
        reservation_id
    );

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ReservationExpired {
        pub reservation_id: Uuid,
        pub vehicle_id: Uuid,
        pub customer_id: Uuid,
    }
    event!(
        ReservationExpired,
        "vehicles.reservation.expired.v1",
        reservation_id
    );

    /// A reservation ended early: the customer cancelled it or staff released it.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ReservationCancelled {
        pub reservation_id: Uuid,
        pub vehicle_id: Uuid,
        pub customer_id: Uuid,
        pub cancelled_by: Uuid,
        pub reason: String,
    }
    event!(
        ReservationCancelled,
        "vehicles.reservation.cancelled.v1",
        reservation_id
    );

    /// A reservation became a contract and its vehicle was assigned.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ReservationConverted {
        pub reservation_id: Uuid,
        pub vehicle_id: Uuid,
        pub customer_id: Uuid,
        pub contract_id: Uuid,
    }
    event!(
        ReservationConverted,
        "vehicles.reservation.converted.v1",
        reservation_id
    );
}

/// Events of the payments service.
pub mod payments {
    use super::*;

    /// A contract was written (`pending_deposit`).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractCreated {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub application_id: Option<Uuid>,
        pub product_id: Uuid,
        pub account_number: String,
        pub currency: String,
        pub total_payable_minor: i64,
    }
    event!(ContractCreated, "payments.contract.created.v1", contract_id);

    /// The deposit and processing fee are paid: the schedule runs from today.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractActivated {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
    }
    event!(
        ContractActivated,
        "payments.contract.activated.v1",
        contract_id
    );

    /// Hardship pause: no late fees, collection or enforcement meanwhile.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractPaused {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub days: i64,
        pub reason: String,
    }
    event!(ContractPaused, "payments.contract.paused.v1", contract_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractResumed {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        /// How far the remaining due dates moved.
        pub days_shifted: i64,
    }
    event!(ContractResumed, "payments.contract.resumed.v1", contract_id);

    /// Everything is paid; the vehicle becomes the customer's.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractPaidOff {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
    }
    event!(
        ContractPaidOff,
        "payments.contract.paid_off.v1",
        contract_id
    );

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractDefaulted {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub reason: String,
    }
    event!(
        ContractDefaulted,
        "payments.contract.defaulted.v1",
        contract_id
    );

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractWrittenOff {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub amount_minor: i64,
        pub currency: String,
        pub reason: String,
    }
    event!(
        ContractWrittenOff,
        "payments.contract.written_off.v1",
        contract_id
    );

    /// The handover steps are done.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractOwnershipTransferred {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
    }
    event!(
        ContractOwnershipTransferred,
        "payments.contract.ownership_transferred.v1",
        contract_id
    );

    /// A contract's arrears bucket changed.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ArrearsChanged {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub days_past_due: i64,
        pub bucket: String,
        pub overdue_minor: i64,
    }
    event!(
        ArrearsChanged,
        "payments.contract.arrears_changed.v1",
        contract_id
    );

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PaymentReceived {
        pub payment_id: Uuid,
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub amount_minor: i64,
        pub currency: String,
        pub method: String,
        pub days_late: i64,
    }
    event!(PaymentReceived, "payments.payment.received.v1", payment_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct PaymentReversed {
        pub payment_id: Uuid,
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub amount_minor: i64,
        pub currency: String,
        pub method: String,
        pub days_late: i64,
    }
    event!(PaymentReversed, "payments.payment.reversed.v1", payment_id);

    /// A day of automatic collection ended without the money: every prompt
    /// the day allowed failed, or the last failure waits for tomorrow.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct CollectionFailed {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        /// The operator's calendar date, `YYYY-MM-DD`.
        pub day: String,
        pub amount_minor: i64,
        pub currency: String,
        /// `mpesa` or `mtn_momo`.
        pub rail: String,
        /// The rail's result code of the last attempt.
        pub reason_code: String,
        pub prompts: i64,
    }
    event!(
        CollectionFailed,
        "payments.collection.failed.v1",
        contract_id
    );

    /// An unpaid installment of a contract taking payments falls due in
    /// `days_before` days (2, or 0 for the day itself): the reminder sends.
    /// Published once per (contract, installment, days_before), on that day only.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct InstallmentDue {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub installment: u32,
        /// The operator's calendar date, `YYYY-MM-DD`.
        pub due_date: String,
        /// What collection will ask for on the due date: this installment and any
        /// earlier one still unpaid, less credit waiting on the contract.
        pub amount_due_minor: i64,
        pub currency: String,
        pub days_before: i64,
    }
    event!(InstallmentDue, "payments.installment.due.v1", contract_id);

    /// A contract closed as `upgraded`: the customer traded its vehicle in
    /// for the one under `new_contract_id`, which activated in the same
    /// transaction. `vehicle_id` is the vehicle handed back.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ContractUpgraded {
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub new_contract_id: Uuid,
        pub new_vehicle_id: Uuid,
        pub upgrade_request_id: Uuid,
        /// The trade-in value the upgrade was approved at.
        pub trade_in_value_minor: i64,
        /// What the trade-in left after the old contract's debt, carried to the new one.
        pub equity_minor: i64,
        pub currency: String,
    }
    event!(
        ContractUpgraded,
        "payments.contract.upgraded.v1",
        contract_id
    );
}

/// Events of the telematics service.
pub mod telematics {
    use super::*;
    use chrono::{DateTime, Utc};

    /// Something risky happened to a vehicle on the road.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RiskDetected {
        pub event_id: Uuid,
        pub vehicle_id: Uuid,
        pub device_id: Uuid,
        pub kind: String,
        pub severity: String,
        pub at: DateTime<Utc>,
        pub lat: f64,
        pub lon: f64,
        pub details: serde_json::Value,
    }
    event!(RiskDetected, "telematics.risk.detected.v1", vehicle_id);

    /// The arrears policy will immobilize a vehicle once `not_before` has
    /// passed and it is parked: the warning notifications send.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ImmobilizationScheduled {
        pub command_id: Uuid,
        pub vehicle_id: Uuid,
        pub contract_id: Uuid,
        pub customer_id: Uuid,
        pub days_past_due: i64,
        pub not_before: DateTime<Utc>,
    }
    event!(
        ImmobilizationScheduled,
        "telematics.immobilization.scheduled.v1",
        vehicle_id
    );

    /// An immobilize or restore command changed status.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct CommandStatusChanged {
        pub command_id: Uuid,
        pub vehicle_id: Uuid,
        pub device_id: Uuid,
        pub action: String,
        pub status: String,
        pub contract_id: Option<Uuid>,
    }
    event!(
        CommandStatusChanged,
        "telematics.command.status_changed.v1",
        vehicle_id
    );

    /// A tracker was taken out of service (by staff, or because the contract ended).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct DeviceDecommissioned {
        pub device_id: Uuid,
        pub vehicle_id: Uuid,
        pub contract_id: Option<Uuid>,
        pub reason: String,
    }
    event!(
        DeviceDecommissioned,
        "telematics.device.decommissioned.v1",
        device_id
    );
}

/// Events of the credit service.
pub mod credit {
    use super::*;

    /// An application was submitted (it is decided in the same step).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ApplicationSubmitted {
        pub application_id: Uuid,
        pub customer_id: Uuid,
        pub submitted_by: Uuid,
        pub vehicle_id: Uuid,
        pub reservation_id: Uuid,
        pub product_id: Uuid,
    }
    event!(
        ApplicationSubmitted,
        "credit.application.submitted.v1",
        application_id
    );

    /// An application was decided: by the policy, or by a reviewer.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ApplicationDecided {
        pub application_id: Uuid,
        pub customer_id: Uuid,
        /// `approved`, `conditionally_approved`, `manual_review` or `declined`.
        pub status: String,
        pub score: Option<i64>,
        pub model_version: Option<String>,
        /// The principal reasons, in plain words.
        pub reasons: Vec<String>,
        /// The reviewer, when a person decided.
        pub decided_by: Option<Uuid>,
    }
    event!(
        ApplicationDecided,
        "credit.application.decided.v1",
        application_id
    );

    /// The customer took the offer: the payments service writes the contract.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ApplicationAccepted {
        pub application_id: Uuid,
        pub customer_id: Uuid,
        pub vehicle_id: Uuid,
        pub reservation_id: Option<Uuid>,
        pub product_id: Uuid,
        pub price_minor: i64,
        pub currency: String,
        pub deposit_minor: i64,
        pub term_periods: i64,
        /// Set when the application carries an approved upgrade's equity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub upgrade: Option<UpgradeTerms>,
    }

    /// The approved upgrade an application's deposit comes from: the old
    /// contract is settled by trading its vehicle in at `trade_in_value_minor`,
    /// and what is left over pays the new contract's deposit.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct UpgradeTerms {
        pub upgrade_request_id: Uuid,
        pub from_contract_id: Uuid,
        pub trade_in_value_minor: i64,
    }
    event!(
        ApplicationAccepted,
        "credit.application.accepted.v1",
        application_id
    );

    /// An offer (or a pending review) ended with its reservation.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ApplicationLapsed {
        pub application_id: Uuid,
        pub customer_id: Uuid,
        pub reservation_id: Uuid,
        pub reason: String,
    }
    event!(
        ApplicationLapsed,
        "credit.application.lapsed.v1",
        application_id
    );

    /// A customer's living score changed.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ScoreChanged {
        pub customer_id: Uuid,
        pub score: i64,
        pub previous_score: Option<i64>,
        pub band: String,
        pub model_version: String,
        /// `application`, `on_time_payment`, `late_payment`, `payment_reversed`,
        /// `arrears_changed`, `risk_event`, `contract_completed`, `contract_defaulted`, …
        pub cause: String,
    }
    event!(ScoreChanged, "credit.score.changed.v1", customer_id);
}

/// Events of the support service.
pub mod support {
    use super::*;
    use chrono::{DateTime, Utc};

    /// A ticket was opened (by a customer, staff, or an event such as a crash).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct TicketCreated {
        pub ticket_id: Uuid,
        pub customer_id: Option<Uuid>,
        pub category: String,
        pub priority: String,
        pub first_response_due: DateTime<Utc>,
        pub resolution_due: DateTime<Utc>,
    }
    event!(TicketCreated, "support.ticket.created.v1", ticket_id);

    /// Staff answered a ticket where the customer sees it (internal notes publish nothing).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct TicketReplied {
        pub ticket_id: Uuid,
        pub comment_id: Uuid,
        pub customer_id: Uuid,
        pub subject: String,
    }
    event!(TicketReplied, "support.ticket.replied.v1", ticket_id);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct TicketStatusChanged {
        pub ticket_id: Uuid,
        pub customer_id: Option<Uuid>,
        pub from: String,
        pub to: String,
        pub actor_id: Option<Uuid>,
        pub reason: String,
    }
    event!(
        TicketStatusChanged,
        "support.ticket.status_changed.v1",
        ticket_id
    );

    /// A ticket passed a service-level target (`first_response` or `resolution`) unmet.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct TicketSlaBreached {
        pub ticket_id: Uuid,
        pub customer_id: Option<Uuid>,
        pub priority: String,
        pub target: String,
        pub due: DateTime<Utc>,
        pub assignee_id: Option<Uuid>,
    }
    event!(
        TicketSlaBreached,
        "support.ticket.sla_breached.v1",
        ticket_id
    );
    /// An admin decided an upgrade request: `approved` (the equity may now
    /// be carried into a credit application for the desired vehicle) or
    /// `declined`, with the reason.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct UpgradeDecided {
        pub upgrade_request_id: Uuid,
        pub customer_id: Uuid,
        pub contract_id: Uuid,
        pub desired_vehicle_id: Uuid,
        /// `approved` or `declined`.
        pub decision: String,
        pub reason: String,
        pub decided_by: Uuid,
        /// What the old vehicle is taken back at.
        pub trade_in_value_minor: i64,
        /// The trade-in value less what the old contract still owes, at the decision.
        pub equity_minor: i64,
        pub currency: String,
        /// Until when an approval may be carried into an application.
        #[serde(default)]
        pub valid_until: Option<DateTime<Utc>>,
    }
    event!(
        UpgradeDecided,
        "support.upgrade.decided.v1",
        upgrade_request_id
    );
}
