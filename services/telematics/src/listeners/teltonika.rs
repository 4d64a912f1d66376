//! A Teltonika tracker's TCP session: the IMEI handshake (answered 01 for a
//! registered, active device and 00 otherwise), AVL packets acknowledged
//! with their record count once stored, and Codec 12 commands down the same
//! connection. A packet with a bad CRC is not acknowledged (the tracker sends
//! it again); a connection that keeps sending garbage is closed.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::OpenConnection;
use crate::domain::Protocol;
use crate::ingest::IngestError;
use crate::protocol::teltonika::{self, Frame};
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
        tracing::debug!(error = %e, "teltonika session ended");
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
    Ok(())
}

async fn session(
    state: &AppState,
    stream: &mut TcpStream,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    let (imei, used) = loop {
        match teltonika::parse_imei(&buf) {
            Ok(Some(found)) => break found,
            Ok(None) => read_more(state, stream, &mut buf).await?,
            Err(e) => {
                state.stats.bad_frame();
                anyhow::bail!("bad handshake: {e}");
            }
        }
    };
    buf.drain(..used);
    let device = store::active_device_by_imei(&state.deps.db, &imei)
        .await?
        .filter(|d| d.protocol == Protocol::Teltonika);
    let Some(device) = device else {
        state.stats.unknown_device();
        stream.write_all(&[0x00]).await?;
        anyhow::bail!("unknown IMEI {imei}");
    };
    stream.write_all(&[0x01]).await?;
    let (_guard, mut outgoing) = state.sessions.register(device.id);
    let max = state.config.max_frame_bytes;
    let mut bad = 0u32;
    loop {
        // Everything complete in the buffer first.
        loop {
            match teltonika::parse_frame(&buf, max) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    bad = 0;
                    match frame {
                        Frame::Avl { records, .. } => {
                            let positions = records.iter().map(teltonika::to_position).collect();
                            match state.ingest.submit(device.id, positions).await {
                                Ok(o) => stream.write_all(&teltonika::ack(o.accepted)).await?,
                                Err(IngestError::UnknownDevice) => {
                                    anyhow::bail!("device decommissioned")
                                }
                                // Not acknowledged: the tracker keeps the records and resends.
                                Err(IngestError::Unavailable) => {}
                            }
                        }
                        Frame::CommandResponse(text) => {
                            let text = String::from_utf8_lossy(&text).into_owned();
                            commands::acknowledge(state, device.id, None, &text).await?;
                        }
                    }
                }
                Ok(None) => break,
                Err(WireError::BadChecksum { consumed }) => {
                    buf.drain(..consumed.min(buf.len()));
                    state.stats.bad_frame();
                    bad += 1;
                    if bad >= state.config.max_bad_frames {
                        anyhow::bail!("too many bad packets");
                    }
                }
                Err(e) => {
                    state.stats.bad_frame();
                    anyhow::bail!("unreadable packet: {e}");
                }
            }
        }
        tokio::select! {
            r = read_more(state, stream, &mut buf) => r?,
            out = outgoing.recv() => match out {
                Some(cmd) => stream.write_all(&teltonika::command(&cmd.text)).await?,
                None => anyhow::bail!("session closed by the service"),
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}
