//! Phone numbers and email addresses, parsed once at the edge.

use std::fmt;

/// A phone number that libphonenumber says is valid, held in E.164 form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number as a person types it; national numbers are read in
    /// `default_region` (an ISO 3166 code such as `KE`).
    pub fn parse(raw: &str, default_region: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > 32 {
            return Err("is too long to be a phone number".into());
        }
        // libphonenumber reads letters as keypad digits (vanity numbers); a
        // customer's mobile number never has them, so a letter is a typo.
        if !raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
        {
            return Err("may contain only digits, spaces, + - ( ) and .".into());
        }
        let region: phonenumber::country::Id = default_region
            .parse()
            .map_err(|_| format!("unknown default region {default_region:?}"))?;
        let number = phonenumber::parse(Some(region), raw)
            .map_err(|_| "is not a phone number".to_owned())?;
        if !phonenumber::is_valid(&number) {
            return Err("is not a valid phone number".into());
        }
        Ok(Self(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last three digits hidden, for logs and lists.
    pub fn masked(&self) -> String {
        let keep = self.0.len().saturating_sub(3);
        format!("{}{}", "*".repeat(keep), &self.0[keep..])
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

/// An email address, lower-cased so that lookups match however it was typed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.len() > 254 {
            return Err("is too long".into());
        }
        let parsed: email_address::EmailAddress = trimmed
            .parse()
            .map_err(|_| "is not an email address".to_owned())?;
        if !parsed.domain().contains('.') {
            return Err("is not an email address".into());
        }
        Ok(Self(parsed.as_str().to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domain = self.0.split('@').nth(1).unwrap_or("");
        write!(f, "EmailAddress(***@{domain})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_kenyan_numbers_to_e164() {
        for raw in [
            "0712345678",
            "+254712345678",
            "254 712 345 678",
            "0712-345-678",
        ] {
            assert_eq!(
                PhoneNumber::parse(raw, "KE").unwrap().as_str(),
                "+254712345678",
                "{raw}"
            );
        }
        assert_eq!(
            PhoneNumber::parse("0772123456", "UG").unwrap().as_str(),
            "+256772123456"
        );
    }

    #[test]
    fn refuses_what_is_not_a_phone() {
        for raw in [
            "",
            "hello",
            "12",
            "+2547",
            "07123456789012345678",
            "+2547ABCDEFGH",
            "0722 CALL ME",
        ] {
            assert!(PhoneNumber::parse(raw, "KE").is_err(), "{raw}");
        }
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            EmailAddress::parse(" Wanjiru@Example.CO.KE ")
                .unwrap()
                .as_str(),
            "wanjiru@example.co.ke"
        );
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert!(EmailAddress::parse("a@localhost").is_err());
    }
}
