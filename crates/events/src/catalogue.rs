//! Every event type any service publishes, with its payload. Payloads carry
//! ids and facts, never personal data such as phone numbers or names.

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
