//! A contract's lifecycle and its customer-facing account number.

use rand::Rng;

miliki_platform::string_enum!(
    /// Where a contract is in its life.
    ContractStatus {
        PendingDeposit => "pending_deposit",
        Active => "active",
        Paused => "paused",
        PaidOff => "paid_off",
        OwnershipTransferred => "ownership_transferred",
        Defaulted => "defaulted",
        WrittenOff => "written_off",
        Cancelled => "cancelled",
        Upgraded => "upgraded",
    }
);

impl ContractStatus {
    /// The single transition function: `Ok(to)` when a contract may go from
    /// `self` to `to`, else why not.
    pub fn transition(self, to: ContractStatus) -> Result<ContractStatus, String> {
        use ContractStatus::*;
        let legal = matches!(
            (self, to),
            (PendingDeposit, Active)
                | (PendingDeposit, Cancelled)
                | (Active, Paused)
                | (Active, PaidOff)
                | (Active, Defaulted)
                | (Paused, Active)
                | (Paused, PaidOff)
                | (Paused, Defaulted)
                | (Defaulted, Active)
                | (Defaulted, PaidOff)
                | (Defaulted, WrittenOff)
                // A reversal of the last payment reopens a paid-off contract.
                | (PaidOff, Active)
                | (PaidOff, OwnershipTransferred)
                // Traded in when the upgrade's new contract activates.
                | (Active, Upgraded)
        );
        if legal {
            Ok(to)
        } else {
            Err(format!("a contract cannot go from {self} to {to}"))
        }
    }

    /// Whether payments are taken.
    pub fn takes_payments(self) -> bool {
        use ContractStatus::*;
        matches!(self, PendingDeposit | Active | Paused | Defaulted)
    }

    /// Whether the daily job ages it and charges late fees.
    pub fn accrues_arrears(self) -> bool {
        matches!(self, ContractStatus::Active | ContractStatus::Defaulted)
    }
}

/// Crockford's base-32 alphabet: no I, L, O or U to misread on a paybill.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The prefix every account number starts with.
pub const ACCOUNT_PREFIX: &str = "MLK";

fn value_of(c: u8) -> Option<usize> {
    ALPHABET.iter().position(|&a| a == c)
}

/// The Luhn mod 32 check character of `body`: catches every single
/// mistyped character and every swap of neighbours but `0`/`Z`.
fn check_char(body: &[u8]) -> Option<u8> {
    let mut sum = 0usize;
    let mut double = true;
    for &c in body.iter().rev() {
        let mut v = value_of(c)?;
        if double {
            v *= 2;
            v = v / 32 + v % 32;
        }
        sum += v;
        double = !double;
    }
    Some(ALPHABET[(32 - sum % 32) % 32])
}

/// A fresh account number: `MLK`, six random characters, one check character.
pub fn new_account_number() -> String {
    let mut rng = rand::thread_rng();
    let body: Vec<u8> = (0..6).map(|_| ALPHABET[rng.gen_range(0..32)]).collect();
    let check = check_char(&body).unwrap_or(b'0');
    let mut s = String::with_capacity(10);
    s.push_str(ACCOUNT_PREFIX);
    s.extend(body.iter().map(|&b| b as char));
    s.push(check as char);
    s
}

/// Whether `s` is a well-formed account number (case-blind).
pub fn is_valid_account_number(s: &str) -> bool {
    let upper = s.trim().to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix(ACCOUNT_PREFIX) else {
        return false;
    };
    let bytes = rest.as_bytes();
    if bytes.len() != 7 {
        return false;
    }
    let (body, check) = bytes.split_at(6);
    check_char(body) == Some(check[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContractStatus::*;

    #[test]
    fn account_numbers_carry_a_check_character() {
        for _ in 0..200 {
            let n = new_account_number();
            assert!(n.len() <= 12);
            assert!(is_valid_account_number(&n), "{n}");
            // Any single changed character is caught.
            let bytes = n.as_bytes();
            for pos in 3..n.len() {
                for &alt in ALPHABET.iter() {
                    if alt == bytes[pos] {
                        continue;
                    }
                    let mut m = bytes.to_vec();
                    m[pos] = alt;
                    assert!(!is_valid_account_number(std::str::from_utf8(&m).unwrap()));
                }
            }
            // Swapping two different neighbours is caught (Luhn's one blind
            // spot is the pair of the first and last symbols).
            for pos in 3..n.len() - 1 {
                let pair = [bytes[pos], bytes[pos + 1]];
                if pair[0] != pair[1] && pair != *b"0Z" && pair != *b"Z0" {
                    let mut m = bytes.to_vec();
                    m.swap(pos, pos + 1);
                    assert!(!is_valid_account_number(std::str::from_utf8(&m).unwrap()));
                }
            }
        }
        assert!(!is_valid_account_number("XYZ1234567"));
    }

    #[test]
    fn lifecycle_refuses_illegal_moves() {
        assert_eq!(PendingDeposit.transition(Active), Ok(Active));
        assert!(Active.transition(Cancelled).is_err());
        assert!(OwnershipTransferred.transition(Active).is_err());
        assert!(WrittenOff.transition(Active).is_err());
        assert!(Cancelled.transition(Active).is_err());
        assert_eq!(
            PaidOff.transition(OwnershipTransferred),
            Ok(OwnershipTransferred)
        );
        for &from in ContractStatus::ALL {
            assert!(from.transition(from).is_err(), "{from} to itself");
        }
    }
}
