//! The service's types and rules, with no I/O: devices, positions, geometry,
//! risk detection and the immobilization state machine.

pub mod geo;
pub mod position;
pub mod risk;
pub mod trips;

use miliki_platform::string_enum;

pub use position::Position;

/// A tracker's 15-digit IMEI whose last digit is its Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Imei(String);

impl Imei {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.len() != 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be exactly 15 digits".into());
        }
        if !luhn_ok(s) {
            return Err("has a wrong check digit (Luhn)".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Luhn check over a string of ASCII digits.
pub fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

string_enum!(
    /// How a tracker talks to the service.
    Protocol { Teltonika => "teltonika", Gt06 => "gt06", Osmand => "osmand", Websocket => "websocket" }
);

impl Protocol {
    /// Protocols that authenticate with a device token rather than the IMEI alone.
    pub fn uses_token(self) -> bool {
        matches!(self, Protocol::Osmand | Protocol::Websocket)
    }
}

string_enum!(
    DeviceStatus { Active => "active", Decommissioned => "decommissioned" }
);

string_enum!(
    /// What an immobilization command does to the engine relay.
    CommandAction { Immobilize => "immobilize", Restore => "restore" }
);

string_enum!(
    /// Where a command is in its life; see [`CommandStatus::can_move_to`].
    CommandStatus {
        Queued => "queued",
        Sent => "sent",
        Acknowledged => "acknowledged",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

impl CommandStatus {
    /// The one transition rule: queued → sent ⇄ queued (the vehicle moved
    /// again before a resend), sent → acknowledged | failed, and anything not
    /// yet finished → cancelled.
    pub fn can_move_to(self, to: CommandStatus) -> bool {
        use CommandStatus::*;
        matches!(
            (self, to),
            (Queued, Sent)
                | (Sent, Sent)
                | (Sent, Queued)
                | (Sent, Acknowledged)
                | (Sent, Failed)
                | (Queued, Failed)
                | (Queued, Cancelled)
                | (Sent, Cancelled)
        )
    }

    pub fn is_open(self) -> bool {
        matches!(self, CommandStatus::Queued | CommandStatus::Sent)
    }
}

string_enum!(
    /// Who asked for a command.
    CommandSource { Manual => "manual", Policy => "policy" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imei_luhn() {
        assert!(Imei::parse("356307042441013").is_ok());
        assert!(Imei::parse("356307042441014").is_err());
        assert!(Imei::parse("35630704244101").is_err());
        assert!(Imei::parse("35630704244101a").is_err());
    }

    #[test]
    fn command_transitions() {
        use CommandStatus::*;
        assert!(Queued.can_move_to(Sent));
        assert!(Sent.can_move_to(Acknowledged));
        assert!(!Acknowledged.can_move_to(Cancelled));
        assert!(!Cancelled.can_move_to(Sent));
        assert!(!Queued.can_move_to(Acknowledged));
    }
}
