//! A GT06 / Concox tracker's TCP session: a login first (acknowledged for a
//! registered, active device; otherwise the connection is closed), then
//! location, status and alarm packets, with the acknowledgements the devices
//! wait for, and relay commands down the same connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::OpenConnection;
use crate::domain::position::Position;
use crate::domain::Protocol;
use crate::ingest::IngestError;
use crate::protocol::gt06::{self, Message};
use crate::protocol::WireError;
use crate::state::AppState;
use crate::{commands, store};

pub(crate) async fn serve(
    state: AppState,
    mut stream: TcpStream,
    _open: OpenConnection,
    shutdown: CancellationToken,
) {
    if let Err(e) = session(&state, &mut stream, &shutdown).await {
        tracing::debug!(error = %e, "gt06 session ended");
    }
    let _ = stream.shutdown().await;
}

async fn read_more(
    state: &AppState,
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let n = tokio::time::timeout(state.config.idle_timeout, stream.read_buf(buf))
        .await
        .map_err(|_| anyhow::anyhow!("idle timeout"))??;
    if n == 0 {
        anyhow::bail!("closed by the tracker");
    }
    if buf.len() > state.config.max_frame_bytes {
        anyhow::bail!("oversized packet");
    }
    Ok(())
}

async fn submit(state: &AppState, device: uuid::Uuid, p: Position) -> anyhow::Result<bool> {
    match state.ingest.submit(device, vec![p]).await {
        Ok(_) => Ok(true),
        Err(IngestError::UnknownDevice) => anyhow::bail!("device decommissioned"),
        Err(IngestError::Unavailable) => Ok(false),
    }
}

async fn session(
    state: &AppState,
    stream: &mut TcpStream,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let mut device: Option<uuid::Uuid> = None;
    let mut guard = None;
    let mut outgoing: Option<tokio::sync::mpsc::Receiver<crate::sessions::Outgoing>> = None;
    let mut last_status: Option<gt06::Status> = None;
    let mut last_fix: Option<Position> = None;
    let mut serial: u16 = 0;
    let mut bad = 0u32;
    loop {
        loop {
            let (packet, used) = match gt06::parse_packet(&buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(WireError::BadChecksum { consumed }) => {
                    buf.drain(..consumed.min(buf.len()));
                    state.stats.bad_frame();
                    bad += 1;
                    if bad >= state.config.max_bad_frames {
                        anyhow::bail!("too many bad packets");
                    }
                    continue;
                }
                Err(e) => {
                    state.stats.bad_frame();
                    anyhow::bail!("unreadable packet: {e}");
                }
            };
            buf.drain(..used);
            bad = 0;
            let Some(id) = device else {
                let Message::Login { imei } = &packet.message else {
                    anyhow::bail!("data before login");
                };
                let found = store::active_device_by_imei(&state.deps.db, imei)
                    .await?
                    .filter(|d| d.protocol == Protocol::Gt06);
                let Some(found) = found else {
                    state.stats.unknown_device();
                    anyhow::bail!("unknown IMEI {imei}");
                };
                device = Some(found.id);
                let (g, rx) = state.sessions.register(found.id);
                guard = Some(g);
                outgoing = Some(rx);
                if let Some(ack) = packet.response() {
                    stream.write_all(&ack).await?;
                }
                continue;
            };
            let mut acknowledge = true;
            let response = packet.response();
            match packet.message {
                Message::Login { .. } | Message::Other => {}
                Message::Location(mut p) => {
                    if let Some(s) = &last_status {
                        if p.ignition.is_none() {
                            gt06::apply_status(&mut p, s);
                            // The status's alarms were reported already.
                            p.alarms = Default::default();
                        }
                    }
                    last_fix = Some(p.clone());
                    submit(state, id, p).await?;
                }
                Message::Alarm { position, .. } => {
                    last_fix = Some(position.clone());
                    acknowledge = submit(state, id, position).await?;
                }
                Message::Status(s) => {
                    last_status = Some(s);
                    // Alarms in a heartbeat travel on the last fix, at the time they arrive.
                    if s.alarm_bits != 0 {
                        if let Some(fix) = &last_fix {
                            let mut p = fix.clone();
                            p.at = state
                                .deps
                                .clock
                                .now()
                                .max(fix.at + chrono::Duration::milliseconds(1));
                            gt06::apply_status(&mut p, &s);
                            acknowledge = submit(state, id, p).await?;
                        }
                    }
                }
                Message::CommandReply { text, .. } => {
                    commands::acknowledge(state, id, None, &text).await?;
                }
            }
            if acknowledge {
                if let Some(ack) = response {
                    stream.write_all(&ack).await?;
                }
            }
        }
        let next_command = async {
            match outgoing.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = read_more(state, stream, &mut buf) => r?,
            out = next_command => match out {
                Some(cmd) => {
                    serial = serial.wrapping_add(1);
                    let flag = (cmd.command_id.as_u128() & 0xFFFF_FFFF) as u32;
                    stream.write_all(&gt06::command(&cmd.text, flag, serial)).await?;
                }
                None => anyhow::bail!("session closed by the service"),
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
        let _ = &guard;
    }
}
