//! Teltonika's TCP protocol: the IMEI handshake, AVL packets in Codec 8 and
//! Codec 8 Extended (acknowledged with the record count), and Codec 12
//! commands and their responses. Every frame is
//! `00000000 | data length (u32) | codec .. record count 2 | CRC-16/IBM (u32)`.

use chrono::{DateTime, TimeZone, Utc};

use super::crc::crc16_ibm;
use super::{Reader, WireError};
use crate::domain::position::{Alarms, Position};

pub const CODEC_8: u8 = 0x08;
pub const CODEC_8E: u8 = 0x8E;
pub const CODEC_12: u8 = 0x0C;

/// One IO element's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoValue {
    Int(u64),
    Bytes(Vec<u8>),
}

/// One AVL record as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub priority: u8,
    pub lon: f64,
    pub lat: f64,
    pub altitude: i16,
    pub angle: u16,
    pub satellites: u8,
    pub speed_kmh: u16,
    pub event_io: u16,
    pub io: Vec<(u16, IoValue)>,
}

/// What a frame carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Avl {
        codec: u8,
        records: Vec<Record>,
    },
    /// A Codec 12 response (type 0x06) to a command.
    CommandResponse(Vec<u8>),
}

/// The handshake: a u16 length and the IMEI in ASCII digits. `Ok(None)` while incomplete.
pub fn parse_imei(buf: &[u8]) -> Result<Option<(String, usize)>, WireError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if !(8..=17).contains(&len) {
        return Err(WireError::Malformed("IMEI length"));
    }
    let end = buf.len().min(2 + len);
    // Refuse as soon as a non-digit shows, not once the whole length has arrived.
    if !buf[2..end].iter().all(u8::is_ascii_digit) {
        return Err(WireError::Malformed("IMEI is not digits"));
    }
    let Some(digits) = buf.get(2..2 + len) else {
        return Ok(None);
    };
    let imei = String::from_utf8_lossy(digits).into_owned();
    Ok(Some((imei, 2 + len)))
}

/// Reads one frame from the front of `buf`. `Ok(None)` while incomplete;
/// frames whose data length exceeds `max_len` are refused before they are buffered.
pub fn parse_frame(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, WireError> {
    // The preamble is four zero bytes; anything else is not this protocol.
    if buf[..buf.len().min(4)].iter().any(|b| *b != 0) {
        return Err(WireError::Malformed("preamble"));
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > max_len {
        return Err(WireError::TooLarge(len));
    }
    if len < 3 {
        return Err(WireError::Malformed("data length"));
    }
    let total = 8 + len + 4;
    if buf.len() < total {
        return Ok(None);
    }
    let data = &buf[8..8 + len];
    let crc = u32::from_be_bytes([buf[8 + len], buf[9 + len], buf[10 + len], buf[11 + len]]);
    if crc != u32::from(crc16_ibm(data)) {
        return Err(WireError::BadChecksum { consumed: total });
    }
    let frame = parse_data(data)?;
    Ok(Some((frame, total)))
}

fn parse_data(data: &[u8]) -> Result<Frame, WireError> {
    let mut r = Reader::new(data);
    let codec = r.u8()?;
    let count = r.u8()?;
    let frame = match codec {
        CODEC_8 | CODEC_8E => {
            let mut records = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                records.push(parse_record(&mut r, codec == CODEC_8E)?);
            }
            Frame::Avl { codec, records }
        }
        CODEC_12 => {
            let kind = r.u8()?;
            let size = r.u32()? as usize;
            let body = r.take(size)?.to_vec();
            match kind {
                0x06 => Frame::CommandResponse(body),
                _ => return Err(WireError::Malformed("Codec 12 message type")),
            }
        }
        _ => return Err(WireError::Malformed("unknown codec")),
    };
    let count2 = r.u8()?;
    if count2 != count || r.remaining() != 0 {
        return Err(WireError::Malformed("record counts disagree"));
    }
    Ok(frame)
}

fn parse_record(r: &mut Reader<'_>, extended: bool) -> Result<Record, WireError> {
    let ms = r.u64()?;
    let at = i64::try_from(ms)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .ok_or(WireError::Malformed("timestamp"))?;
    let priority = r.u8()?;
    let lon = f64::from(r.u32()? as i32) / 1e7;
    let lat = f64::from(r.u32()? as i32) / 1e7;
    let altitude = r.u16()? as i16;
    let angle = r.u16()?;
    let satellites = r.u8()?;
    let speed_kmh = r.u16()?;
    let id = |r: &mut Reader<'_>| -> Result<u16, WireError> {
        if extended {
            r.u16()
        } else {
            r.u8().map(u16::from)
        }
    };
    let event_io = id(r)?;
    let _total = id(r)?;
    let mut io = Vec::new();
    for width in [1usize, 2, 4, 8] {
        let n = id(r)?;
        for _ in 0..n {
            let key = id(r)?;
            let raw = r.take(width)?;
            let v = raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            io.push((key, IoValue::Int(v)));
        }
    }
    if extended {
        let n = r.u16()?;
        for _ in 0..n {
            let key = r.u16()?;
            let len = usize::from(r.u16()?);
            io.push((key, IoValue::Bytes(r.take(len)?.to_vec())));
        }
    }
    Ok(Record {
        at,
        priority,
        lon,
        lat,
        altitude,
        angle,
        satellites,
        speed_kmh,
        event_io,
        io,
    })
}

/// The acknowledgement of an AVL packet: how many records were taken.
pub fn ack(records: usize) -> [u8; 4] {
    (records as u32).to_be_bytes()
}

/// A Codec 12 command frame (type 0x05) carrying `text`, e.g. `setdigout 1`.
pub fn command(text: &str) -> Vec<u8> {
    let body = text.as_bytes();
    let mut data = Vec::with_capacity(body.len() + 8);
    data.push(CODEC_12);
    data.push(1);
    data.push(0x05);
    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
    data.extend_from_slice(body);
    data.push(1);
    frame(&data)
}

/// Wraps codec data in the preamble, length and CRC.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&u32::from(crc16_ibm(data)).to_be_bytes());
    out
}

/// Encodes records as a Codec 8 Extended packet (the simulator and tests speak it).
pub fn encode_avl(codec: u8, records: &[Record]) -> Vec<u8> {
    let extended = codec == CODEC_8E;
    let mut d = vec![codec, records.len() as u8];
    let put_id = |d: &mut Vec<u8>, v: u16| {
        if extended {
            d.extend_from_slice(&v.to_be_bytes());
        } else {
            d.push(v as u8);
        }
    };
    for rec in records {
        d.extend_from_slice(&(rec.at.timestamp_millis() as u64).to_be_bytes());
        d.push(rec.priority);
        d.extend_from_slice(&((rec.lon * 1e7).round() as i32).to_be_bytes());
        d.extend_from_slice(&((rec.lat * 1e7).round() as i32).to_be_bytes());
        d.extend_from_slice(&rec.altitude.to_be_bytes());
        d.extend_from_slice(&rec.angle.to_be_bytes());
        d.push(rec.satellites);
        d.extend_from_slice(&rec.speed_kmh.to_be_bytes());
        put_id(&mut d, rec.event_io);
        put_id(&mut d, rec.io.len() as u16);
        for width in [1usize, 2, 4, 8] {
            let items: Vec<_> = rec
                .io
                .iter()
                .filter_map(|(k, v)| match v {
                    IoValue::Int(n) if io_width(*n) == width => Some((*k, *n)),
                    _ => None,
                })
                .collect();
            put_id(&mut d, items.len() as u16);
            for (k, n) in items {
                put_id(&mut d, k);
                d.extend_from_slice(&n.to_be_bytes()[8 - width..]);
            }
        }
        if extended {
            let items: Vec<_> = rec
                .io
                .iter()
                .filter_map(|(k, v)| match v {
                    IoValue::Bytes(b) => Some((*k, b)),
                    _ => None,
                })
                .collect();
            d.extend_from_slice(&(items.len() as u16).to_be_bytes());
            for (k, b) in items {
                d.extend_from_slice(&k.to_be_bytes());
                d.extend_from_slice(&(b.len() as u16).to_be_bytes());
                d.extend_from_slice(b);
            }
        }
    }
    d.push(records.len() as u8);
    frame(&d)
}

fn io_width(n: u64) -> usize {
    match n {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFFFF_FFFF => 4,
        _ => 8,
    }
}

/// The IMEI handshake as a device sends it.
pub fn encode_imei(imei: &str) -> Vec<u8> {
    let mut out = (imei.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(imei.as_bytes());
    out
}

/// Maps a record to the internal position, naming the IO elements Miliki uses:
/// 239 ignition, 240 movement, 66 external voltage (mV), 67 battery voltage
/// (mV), 113 battery level (%), 16 total odometer (m), 247 crash, 249
/// jamming, 252 unplugged (power cut), 246 towing (tamper), and the OBD
/// elements 30 (trouble codes), 32 (coolant °C) and 36 (engine rpm).
pub fn to_position(rec: &Record) -> Position {
    let mut p = Position {
        at: rec.at,
        lat: rec.lat,
        lon: rec.lon,
        speed_kmh: f64::from(rec.speed_kmh),
        heading: Some(f64::from(rec.angle)),
        altitude: Some(f64::from(rec.altitude)),
        satellites: Some(i64::from(rec.satellites)),
        alarms: Alarms::default(),
        ..Default::default()
    };
    for (id, v) in &rec.io {
        let json = match v {
            IoValue::Int(n) => serde_json::Value::from(*n),
            IoValue::Bytes(b) => serde_json::Value::from(hex(b)),
        };
        p.io.insert(id.to_string(), json);
        let IoValue::Int(n) = v else { continue };
        let n = *n;
        let signed = |n: u64| n as i64;
        match id {
            239 => p.ignition = Some(n != 0),
            240 => p.movement = Some(n != 0),
            66 => p.ext_voltage_mv = Some(signed(n)),
            67 => p.battery_mv = Some(signed(n)),
            113 => p.battery_pct = Some(n as f64),
            16 => p.odometer_m = Some(signed(n)),
            247 => p.alarms.crash = n != 0,
            249 => p.alarms.jamming = n != 0,
            252 => p.alarms.power_cut = n != 0,
            246 => p.alarms.tamper = n != 0,
            30 => p.dtc_count = Some(signed(n)),
            // Coolant temperature is a signed byte.
            32 => p.coolant_temp_c = Some(f64::from(n as u8 as i8)),
            36 => p.engine_rpm = Some(signed(n)),
            _ => {}
        }
    }
    p
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // The one-record Codec 8 example of Teltonika's protocol documentation.
    const CODEC8_EXAMPLE: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";

    #[test]
    fn parses_the_documented_codec8_packet() {
        let bytes = unhex(CODEC8_EXAMPLE);
        let (frame, used) = parse_frame(&bytes, 65536).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        let Frame::Avl { codec, records } = frame else {
            panic!("not AVL")
        };
        assert_eq!((codec, records.len()), (CODEC_8, 1));
        let r = &records[0];
        assert_eq!(r.at.timestamp_millis(), 0x16B40D8EA30);
        assert_eq!(r.priority, 1);
        let p = to_position(r);
        // IO 21 (GSM signal) = 3, 1 (digital input 1) = 1, 66 = 24079 mV, 241, 78.
        assert_eq!(p.io.get("21"), Some(&serde_json::json!(3)));
        assert_eq!(p.io.get("1"), Some(&serde_json::json!(1)));
        assert_eq!(p.ext_voltage_mv, Some(0x5E0F));
        assert_eq!(p.io.get("241"), Some(&serde_json::json!(0x601A)));
        assert_eq!(p.io.get("78"), Some(&serde_json::json!(0)));
    }

    #[test]
    fn a_wrong_crc_is_reported_with_the_frame_length() {
        let mut bytes = unhex(CODEC8_EXAMPLE);
        let n = bytes.len();
        bytes[n - 1] ^= 0xFF;
        assert_eq!(
            parse_frame(&bytes, 65536),
            Err(WireError::BadChecksum { consumed: n })
        );
    }

    #[test]
    fn codec8e_round_trips_with_variable_length_elements() {
        let rec = Record {
            at: Utc.timestamp_millis_opt(1_772_438_400_000).unwrap(),
            priority: 0,
            lon: 36.8172,
            lat: -1.2864,
            altitude: 1661,
            angle: 90,
            satellites: 11,
            speed_kmh: 42,
            event_io: 0,
            io: vec![
                (239, IoValue::Int(1)),
                (66, IoValue::Int(12_600)),
                (16, IoValue::Int(123_456)),
                (256, IoValue::Bytes(b"VIN123".to_vec())),
            ],
        };
        let bytes = encode_avl(CODEC_8E, std::slice::from_ref(&rec));
        let (frame, _) = parse_frame(&bytes, 65536).unwrap().unwrap();
        let Frame::Avl { records, .. } = frame else {
            panic!()
        };
        assert_eq!(records[0].io.len(), 4);
        let p = to_position(&records[0]);
        assert_eq!(p.odometer_m, Some(123_456));
        assert!((p.lat + 1.2864).abs() < 1e-7 && (p.lon - 36.8172).abs() < 1e-7);
        assert_eq!(p.io.get("256"), Some(&serde_json::json!("56494e313233")));
    }

    #[test]
    fn command_frames_carry_codec12() {
        let bytes = command("setdigout 1");
        // A device's response has the same layout with type 0x06.
        let mut resp = bytes.clone();
        resp[10] = 0x06;
        let data_len = resp.len() - 12;
        let crc = crc16_ibm(&resp[8..8 + data_len]);
        let n = resp.len();
        resp[n - 2..].copy_from_slice(&crc.to_be_bytes());
        let (frame, _) = parse_frame(&resp, 65536).unwrap().unwrap();
        assert_eq!(frame, Frame::CommandResponse(b"setdigout 1".to_vec()));
    }

    #[test]
    fn imei_handshake() {
        let b = encode_imei("356307042441013");
        assert_eq!(
            parse_imei(&b).unwrap(),
            Some(("356307042441013".into(), 17))
        );
        assert_eq!(parse_imei(&b[..5]).unwrap(), None);
        assert!(parse_imei(&[0, 15, b'x']).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_frame(&bytes, 65536);
            let _ = parse_imei(&bytes);
        }

        #[test]
        fn truncated_or_flipped_packets_never_panic(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
            let mut bytes = unhex(CODEC8_EXAMPLE);
            let n = bytes.len();
            bytes[flip % n] ^= 1 << bit;
            bytes.truncate(cut.min(n));
            if let Ok(Some((Frame::Avl { records, .. }, _))) = parse_frame(&bytes, 65536) {
                for r in &records { let _ = to_position(r); }
            }
        }

        #[test]
        fn frames_with_random_bodies_and_valid_crc_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let f = frame(&body);
            let _ = parse_frame(&f, 65536);
        }
    }
}
