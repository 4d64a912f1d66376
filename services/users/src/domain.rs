//! The rules of accounts and KYC, with no I/O.

use miliki_platform::string_enum;

string_enum!(
    /// Whether an account may act.
    UserStatus { Active => "active", Suspended => "suspended" }
);

string_enum!(
    /// An identity document a customer can present.
    DocumentType {
        NationalId => "national_id",
        Passport => "passport",
        DrivingLicence => "driving_licence",
    }
);

string_enum!(
    /// Where a KYC submission stands.
    KycStatus {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        ResubmissionRequested => "resubmission_requested",
    }
);

string_enum!(
    /// A reviewer's verdict.
    KycDecision {
        Approve => "approve",
        Reject => "reject",
        RequestResubmission => "request_resubmission",
    }
);

string_enum!(
    /// The images of a submission.
    DocumentSide { Front => "front", Back => "back", Selfie => "selfie" }
);

/// The only transitions a submission may make: a pending one is decided once.
pub fn decide(current: KycStatus, decision: KycDecision) -> Result<KycStatus, String> {
    match (current, decision) {
        (KycStatus::Pending, KycDecision::Approve) => Ok(KycStatus::Approved),
        (KycStatus::Pending, KycDecision::Reject) => Ok(KycStatus::Rejected),
        (KycStatus::Pending, KycDecision::RequestResubmission) => {
            Ok(KycStatus::ResubmissionRequested)
        }
        (other, _) => Err(format!(
            "the submission is {other}, not pending; it has been decided"
        )),
    }
}

/// A customer may submit unless a submission is under review or already approved.
pub fn may_submit(latest: Option<KycStatus>) -> Result<(), String> {
    match latest {
        Some(KycStatus::Pending) => Err("a submission is already awaiting review".into()),
        Some(KycStatus::Approved) => Err("KYC is already approved".into()),
        _ => Ok(()),
    }
}

impl DocumentType {
    /// Passports have no back side worth photographing.
    pub fn needs_back(self) -> bool {
        !matches!(self, DocumentType::Passport)
    }

    /// Checks a document number's shape for this type: 5–20 letters or digits.
    pub fn parse_number(self, raw: &str) -> Result<String, String> {
        let cleaned: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if cleaned.len() < 5 || cleaned.len() > 20 {
            return Err("must be 5 to 20 letters or digits".into());
        }
        if !cleaned.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("may contain only letters, digits, spaces and dashes".into());
        }
        if self == DocumentType::NationalId && !cleaned.chars().any(|c| c.is_ascii_digit()) {
            return Err("a national id number has digits".into());
        }
        Ok(cleaned.to_ascii_uppercase())
    }
}

/// A person's name as typed: trimmed, 2–100 characters, no control characters.
pub fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars = name.chars().count();
    if chars < 2 {
        return Err("must be at least 2 characters".into());
    }
    if chars > 100 {
        return Err("must be at most 100 characters".into());
    }
    if name.chars().any(char::is_control) {
        return Err("may not contain control characters".into());
    }
    Ok(name)
}

/// A reviewer's reason: required to reject or ask again, at most 500 characters.
pub fn parse_reason(decision: KycDecision, raw: Option<&str>) -> Result<Option<String>, String> {
    let reason = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if let Some(r) = &reason {
        if r.chars().count() > 500 {
            return Err("must be at most 500 characters".into());
        }
    }
    match (decision, &reason) {
        (KycDecision::Approve, _) => Ok(reason),
        (_, None) => Err("is required to reject or request resubmission".into()),
        (_, Some(_)) => Ok(reason),
    }
}

/// Masks all but the last four characters of a document number.
pub fn mask_document_number(number: &str) -> String {
    let n = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_submission_is_decided_once() {
        assert_eq!(
            decide(KycStatus::Pending, KycDecision::Approve),
            Ok(KycStatus::Approved)
        );
        assert_eq!(
            decide(KycStatus::Pending, KycDecision::RequestResubmission),
            Ok(KycStatus::ResubmissionRequested)
        );
        for done in [
            KycStatus::Approved,
            KycStatus::Rejected,
            KycStatus::ResubmissionRequested,
        ] {
            for d in [
                KycDecision::Approve,
                KycDecision::Reject,
                KycDecision::RequestResubmission,
            ] {
                assert!(decide(done, d).is_err());
            }
        }
    }

    #[test]
    fn who_may_submit() {
        assert!(may_submit(None).is_ok());
        assert!(may_submit(Some(KycStatus::Rejected)).is_ok());
        assert!(may_submit(Some(KycStatus::ResubmissionRequested)).is_ok());
        assert!(may_submit(Some(KycStatus::Pending)).is_err());
        assert!(may_submit(Some(KycStatus::Approved)).is_err());
    }

    #[test]
    fn document_numbers_and_names() {
        assert_eq!(
            DocumentType::NationalId
                .parse_number(" 2345 6789 ")
                .unwrap(),
            "23456789"
        );
        assert!(DocumentType::NationalId.parse_number("ABCDEF").is_err());
        assert!(DocumentType::Passport.parse_number("A1").is_err());
        assert!(DocumentType::Passport.parse_number("AK<123456").is_err());
        assert_eq!(mask_document_number("23456789"), "****6789");
        assert_eq!(parse_name("  Achieng   Otieno ").unwrap(), "Achieng Otieno");
        assert!(parse_name("A").is_err());
        assert!(parse_reason(KycDecision::Reject, Some("  ")).is_err());
        assert_eq!(parse_reason(KycDecision::Approve, None).unwrap(), None);
    }
}
