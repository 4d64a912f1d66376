//! The GT06 / Concox binary protocol: `78 78 | length | protocol | content |
//! serial (u16) | CRC-ITU (u16) | 0D 0A` (or `79 79` with a u16 length), the
//! CRC covering length .. serial. Login, location, status and alarm packets
//! are understood; the server acknowledges login, status and alarm, and
//! sends commands (protocol 0x80) whose replies come back as 0x15.

use chrono::{DateTime, NaiveDate, Utc};

use super::crc::crc_itu;
use super::{Reader, WireError};
use crate::domain::position::{Alarms, Position};

/// One decoded packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Login {
        imei: String,
    },
    Location(Position),
    Status(Status),
    Alarm {
        position: Position,
        alarm: u8,
    },
    /// A reply to a command (protocol 0x15).
    CommandReply {
        server_flag: u32,
        text: String,
    },
    /// A packet we frame correctly but do not use; still acknowledged where devices expect it.
    Other,
}

/// The terminal information of status and alarm packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Status {
    pub ignition: bool,
    pub charging: bool,
    /// The relay cutting fuel and electricity is engaged.
    pub relay_cut: bool,
    pub alarm_bits: u8,
    /// 0 (no power) .. 6 (full).
    pub voltage_level: u8,
    pub gsm_signal: u8,
}

/// A decoded packet and what it takes to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub protocol: u8,
    pub serial: u16,
    pub message: Message,
}

impl Packet {
    /// The acknowledgement the device waits for, if any.
    pub fn response(&self) -> Option<Vec<u8>> {
        match self.protocol {
            0x01 | 0x13 | 0x16 | 0x23 | 0x26 => Some(encode(self.protocol, &[], self.serial)),
            _ => None,
        }
    }
}

/// Reads one packet from the front of `buf`; `Ok(None)` while incomplete.
pub fn parse_packet(buf: &[u8]) -> Result<Option<(Packet, usize)>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let long = match buf.get(..2) {
        None => {
            return if buf[0] == 0x78 || buf[0] == 0x79 {
                Ok(None)
            } else {
                Err(WireError::Malformed("start bytes"))
            }
        }
        Some([0x78, 0x78]) => false,
        Some([0x79, 0x79]) => true,
        Some(_) => return Err(WireError::Malformed("start bytes")),
    };
    let (len, head) = if long {
        match buf.get(2..4) {
            Some(b) => (usize::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        }
    } else {
        match buf.get(2) {
            Some(b) => (usize::from(*b), 3),
            None => return Ok(None),
        }
    };
    // Protocol number, serial and CRC at the least.
    if len < 5 {
        return Err(WireError::Malformed("length"));
    }
    let total = head + len + 2;
    if buf.len() < total {
        return Ok(None);
    }
    if buf[total - 2..total] != [0x0D, 0x0A] {
        return Err(WireError::Malformed("stop bytes"));
    }
    let body = &buf[2..head + len - 2];
    let crc = u16::from_be_bytes([buf[head + len - 2], buf[head + len - 1]]);
    if crc != crc_itu(body) {
        return Err(WireError::BadChecksum { consumed: total });
    }
    let protocol = buf[head];
    let content = &buf[head + 1..head + len - 4];
    let serial = u16::from_be_bytes([buf[head + len - 4], buf[head + len - 3]]);
    let message = decode(protocol, content)?;
    Ok(Some((
        Packet {
            protocol,
            serial,
            message,
        },
        total,
    )))
}

fn decode(protocol: u8, content: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader::new(content);
    Ok(match protocol {
        0x01 => {
            let bcd = r.take(8)?;
            let mut digits = String::with_capacity(16);
            for b in bcd {
                for nibble in [b >> 4, b & 0x0F] {
                    if nibble > 9 {
                        return Err(WireError::Malformed("terminal id is not BCD"));
                    }
                    digits.push(char::from(b'0' + nibble));
                }
            }
            // Sixteen digits: the IMEI's fifteen behind a leading zero.
            let imei = digits.trim_start_matches('0').to_owned();
            let imei = format!("{imei:0>15}");
            Message::Login { imei }
        }
        0x12 | 0x22 => {
            let mut p = gps(&mut r)?;
            let _lbs = r.take(8)?;
            if protocol == 0x22 && r.remaining() >= 3 {
                p.ignition = Some(r.u8()? != 0);
                let _mode = r.u8()?;
                let _reupload = r.u8()?;
                if r.remaining() >= 4 {
                    p.odometer_m = Some(i64::from(r.u32()?));
                }
            }
            Message::Location(p)
        }
        0x13 | 0x23 => Message::Status(status(&mut r)?),
        0x16 | 0x26 => {
            let mut p = gps(&mut r)?;
            let lbs_len = usize::from(r.u8()?);
            let _lbs = r.take(lbs_len.saturating_sub(1))?;
            let s = status(&mut r)?;
            let alarm = if r.remaining() >= 1 { r.u8()? } else { 0 };
            apply_status(&mut p, &s);
            match alarm {
                0x01 => p.alarms.sos = true,
                0x02 => p.alarms.power_cut = true,
                0x03 | 0x09 => p.alarms.tamper = true,
                _ => {}
            }
            Message::Alarm { position: p, alarm }
        }
        0x15 => {
            let len = usize::from(r.u8()?);
            let server_flag = r.u32()?;
            let text = r.take(len.saturating_sub(4))?;
            Message::CommandReply {
                server_flag,
                text: String::from_utf8_lossy(text).into_owned(),
            }
        }
        _ => Message::Other,
    })
}

fn gps(r: &mut Reader<'_>) -> Result<Position, WireError> {
    let d = r.take(6)?;
    let at = NaiveDate::from_ymd_opt(2000 + i32::from(d[0]), u32::from(d[1]), u32::from(d[2]))
        .and_then(|day| day.and_hms_opt(u32::from(d[3]), u32::from(d[4]), u32::from(d[5])))
        .map(|t| DateTime::<Utc>::from_naive_utc_and_offset(t, Utc))
        .ok_or(WireError::Malformed("date and time"))?;
    let sats = r.u8()? & 0x0F;
    let lat = f64::from(r.u32()?) / 1_800_000.0;
    let lon = f64::from(r.u32()?) / 1_800_000.0;
    let speed = r.u8()?;
    let flags = r.u16()?;
    let lat = if flags & 0x0400 != 0 { lat } else { -lat };
    let lon = if flags & 0x0800 != 0 { -lon } else { lon };
    let mut io = serde_json::Map::new();
    io.insert(
        "gps_valid".into(),
        serde_json::Value::from(flags & 0x1000 != 0),
    );
    Ok(Position {
        at,
        lat,
        lon,
        speed_kmh: f64::from(speed),
        heading: Some(f64::from(flags & 0x03FF)),
        satellites: Some(i64::from(sats)),
        alarms: Alarms::default(),
        io,
        ..Default::default()
    })
}

fn status(r: &mut Reader<'_>) -> Result<Status, WireError> {
    let info = r.u8()?;
    let voltage_level = r.u8()?;
    let gsm_signal = r.u8()?;
    Ok(Status {
        ignition: info & 0x02 != 0,
        charging: info & 0x04 != 0,
        relay_cut: info & 0x80 != 0,
        alarm_bits: (info >> 3) & 0x07,
        voltage_level,
        gsm_signal,
    })
}

/// Folds terminal information into a position.
pub fn apply_status(p: &mut Position, s: &Status) {
    p.ignition = Some(s.ignition);
    p.battery_pct = Some(f64::from(s.voltage_level.min(6)) / 6.0 * 100.0);
    match s.alarm_bits {
        0b100 => p.alarms.sos = true,
        0b010 => p.alarms.power_cut = true,
        _ => {}
    }
    p.io.insert("relay_cut".into(), serde_json::Value::from(s.relay_cut));
    p.io.insert("gsm_signal".into(), serde_json::Value::from(s.gsm_signal));
}

/// Frames `content` under `protocol` with `serial`.
pub fn encode(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let len = 1 + content.len() + 4;
    let mut out = vec![0x78, 0x78, len as u8, protocol];
    out.extend_from_slice(content);
    out.extend_from_slice(&serial.to_be_bytes());
    let crc = crc_itu(&out[2..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[0x0D, 0x0A]);
    out
}

/// A text command (protocol 0x80), e.g. `Relay,1#`; the device's reply
/// carries `server_flag` back.
pub fn command(text: &str, server_flag: u32, serial: u16) -> Vec<u8> {
    let mut content = vec![(4 + text.len()) as u8];
    content.extend_from_slice(&server_flag.to_be_bytes());
    content.extend_from_slice(text.as_bytes());
    encode(0x80, &content, serial)
}

/// A login packet as a device sends it (tests and the simulator).
pub fn encode_login(imei: &str, serial: u16) -> Vec<u8> {
    let digits = format!("{imei:0>16}");
    let bytes: Vec<u8> = digits
        .as_bytes()
        .chunks(2)
        .map(|c| {
            ((c[0].wrapping_sub(b'0')) << 4)
                | (c.get(1).copied().unwrap_or(b'0').wrapping_sub(b'0') & 0x0F)
        })
        .collect();
    encode(0x01, &bytes, serial)
}

/// A GT06 location packet (0x12) as a device sends it.
pub fn encode_location(p: &Position, serial: u16) -> Vec<u8> {
    let mut c = Vec::new();
    let t = p.at.naive_utc();
    use chrono::{Datelike, Timelike};
    c.extend_from_slice(&[
        (t.year() - 2000) as u8,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    ]);
    c.push(0xC0 | (p.satellites.unwrap_or(8).clamp(0, 15) as u8));
    c.extend_from_slice(&((p.lat.abs() * 1_800_000.0).round() as u32).to_be_bytes());
    c.extend_from_slice(&((p.lon.abs() * 1_800_000.0).round() as u32).to_be_bytes());
    c.push(p.speed_kmh.clamp(0.0, 255.0) as u8);
    let mut flags: u16 = 0x1000 | (p.heading.unwrap_or(0.0) as u16 & 0x03FF);
    if p.lat >= 0.0 {
        flags |= 0x0400;
    }
    if p.lon < 0.0 {
        flags |= 0x0800;
    }
    c.extend_from_slice(&flags.to_be_bytes());
    // LBS: MCC 639 (Kenya), MNC 2, LAC, cell.
    c.extend_from_slice(&[0x02, 0x7F, 0x02, 0x00, 0x01, 0x00, 0x00, 0x01]);
    encode(0x12, &c, serial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn login_is_decoded_and_acknowledged() {
        let bytes = encode_login("356307042441013", 1);
        let (packet, used) = parse_packet(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            packet.message,
            Message::Login {
                imei: "356307042441013".into()
            }
        );
        let ack = packet.response().unwrap();
        assert_eq!(&ack[..4], &[0x78, 0x78, 0x05, 0x01]);
        assert_eq!(&ack[4..6], &[0x00, 0x01]);
        // The documented login reply for serial 1.
        assert_eq!(&ack[6..], &[0xD9, 0xDC, 0x0D, 0x0A]);
    }

    #[test]
    fn location_round_trips_south_and_east() {
        let p = Position {
            at: Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
            lat: -1.2864,
            lon: 36.8172,
            speed_kmh: 37.0,
            heading: Some(270.0),
            satellites: Some(9),
            ..Default::default()
        };
        let (packet, _) = parse_packet(&encode_location(&p, 7)).unwrap().unwrap();
        let Message::Location(got) = packet.message else {
            panic!()
        };
        assert!((got.lat - p.lat).abs() < 1e-5 && (got.lon - p.lon).abs() < 1e-5);
        assert_eq!(
            (got.speed_kmh, got.heading, got.at),
            (37.0, Some(270.0), p.at)
        );
    }

    #[test]
    fn a_bad_crc_is_refused() {
        let mut bytes = encode_login("356307042441013", 1);
        let n = bytes.len();
        bytes[n - 3] ^= 0x55;
        assert_eq!(
            parse_packet(&bytes),
            Err(WireError::BadChecksum { consumed: n })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_packet(&bytes);
        }

        #[test]
        fn framed_random_content_never_panics(protocol in any::<u8>(), content in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_packet(&encode(protocol, &content, 1));
        }
    }
}
