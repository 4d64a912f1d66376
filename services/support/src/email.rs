//! Email over SMTP with lettre, when `MILIKI_SMTP_URL` names a server:
//!
//! - `smtp://user:pass@host:587` — submission with STARTTLS, required (the
//!   default for `smtp://`; port 587 unless given). Credentials, if any, are
//!   only sent once the connection is encrypted.
//! - `smtps://user:pass@host:465` — implicit TLS from the first byte (port 465
//!   unless given).
//! - `smtp://host:25?tls=none` — no encryption, for a relay on the same host
//!   or network (port 25 unless given); `?tls=opportunistic` upgrades when
//!   the server offers STARTTLS.
//!
//! User and password are percent-decoded (`%40` for `@`). Mail is sent from
//! `MILIKI_SMTP_FROM` (`Miliki <no-reply@example.com>`), which is required
//! with the URL; `MILIKI_SMTP_HELO` names this host in EHLO (default: the
//! domain of the from address). The server's answer is the delivery's
//! record: its reply code and text when it accepts, or when it refuses.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How email leaves: a configured SMTP server.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, for the delivery log (never the credentials).
    server: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish()
    }
}

/// How the connection is protected, from the URL's scheme and `tls` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    Implicit,
    StartTls,
    Opportunistic,
    None,
}

impl Smtp {
    /// Parses the settings; `None` without a URL (email goes to the local sink).
    pub fn from_settings(
        url: Option<&str>,
        from: Option<&str>,
        helo: Option<&str>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(raw) = url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(raw)
            .map_err(|e| anyhow::anyhow!("MILIKI_SMTP_URL is not a URL: {e}"))?;
        let tls = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_ascii_lowercase());
        let security = match (url.scheme(), tls.as_deref()) {
            ("smtps", None | Some("implicit" | "wrapper")) => Security::Implicit,
            ("smtp", None | Some("required" | "starttls")) => Security::StartTls,
            ("smtp", Some("opportunistic")) => Security::Opportunistic,
            ("smtp", Some("none")) => Security::None,
            (scheme, tls) => anyhow::bail!(
                "MILIKI_SMTP_URL: {scheme}:// with tls={} is not one of smtp:// (STARTTLS), \
                 smtps:// (implicit TLS), smtp://…?tls=none or ?tls=opportunistic",
                tls.unwrap_or("")
            ),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow::anyhow!("MILIKI_SMTP_URL names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(match security {
            Security::Implicit => 465,
            Security::StartTls => 587,
            Security::Opportunistic | Security::None => 25,
        });
        let from: Mailbox = from
            .ok_or_else(|| anyhow::anyhow!("MILIKI_SMTP_FROM is required with MILIKI_SMTP_URL"))?
            .parse()
            .map_err(|e| anyhow::anyhow!("MILIKI_SMTP_FROM is not an address: {e}"))?;
        let helo = helo
            .map(str::to_owned)
            .unwrap_or_else(|| from.email.domain().to_owned());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .hello_name(ClientId::Domain(helo))
            .timeout(Some(Duration::from_secs(20)));
        let params = || {
            TlsParameters::new(host.clone())
                .map_err(|e| anyhow::anyhow!("MILIKI_SMTP_URL: TLS for {host}: {e}"))
        };
        builder = match security {
            Security::Implicit => builder.tls(Tls::Wrapper(params()?)),
            Security::StartTls => builder.tls(Tls::Required(params()?)),
            Security::Opportunistic => builder.tls(Tls::Opportunistic(params()?)),
            Security::None => builder.tls(Tls::None),
        };
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| anyhow::anyhow!("MILIKI_SMTP_URL: credentials are not UTF-8"))
            };
            builder = builder.credentials(Credentials::new(
                decode(url.username())?,
                decode(url.password().unwrap_or(""))?,
            ));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            server: format!("{host}:{port}"),
        }))
    }

    /// Sends one plain-text message; the server's reply (`250 …`) or its refusal.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<String, String> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("smtp {}: bad recipient {to:?}: {e}", self.server))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .map_err(|e| format!("smtp {}: building the message: {e}", self.server))?;
        match self.transport.send(message).await {
            Ok(reply) => Ok(format!(
                "smtp {} accepted: {} {}",
                self.server,
                reply.code(),
                reply.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Err(format!("smtp {}: {e}", self.server)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> anyhow::Result<Option<Smtp>> {
        Smtp::from_settings(Some(url), Some("Miliki <no-reply@miliki.example>"), None)
    }

    #[tokio::test]
    async fn the_documented_url_forms_parse_and_others_are_refused() {
        let s = parse("smtp://user:p%40ss@mail.example.com")
            .unwrap()
            .unwrap();
        assert_eq!(s.server, "mail.example.com:587");
        let s = parse("smtps://mail.example.com").unwrap().unwrap();
        assert_eq!(s.server, "mail.example.com:465");
        let s = parse("smtp://127.0.0.1:2525?tls=none").unwrap().unwrap();
        assert_eq!(s.server, "127.0.0.1:2525");
        let s = parse("smtp://relay.local?tls=opportunistic")
            .unwrap()
            .unwrap();
        assert_eq!(s.server, "relay.local:25");
        assert!(parse("http://mail.example.com").is_err());
        assert!(parse("smtps://mail.example.com?tls=none").is_err());
        assert!(parse("smtp://?tls=none").is_err());
        assert!(Smtp::from_settings(Some("smtp://mail.example.com"), None, None).is_err());
        assert!(Smtp::from_settings(Some("smtp://mail.example.com"), Some("nope"), None).is_err());
        assert!(Smtp::from_settings(None, None, None).unwrap().is_none());
    }
}
