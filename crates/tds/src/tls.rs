//! TLS for TDS: certificate helpers and the adapter that carries TLS handshake records
//! inside PRELOGIN packets (TDS 7.x), switching to raw records once the handshake is done.
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pki_types::pem::PemObject;
use pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::packet::{encode_packets, PacketHeader, PacketType, HEADER_LEN};

/// A certificate chain and its private key.
pub struct TlsIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

pub const CERT_FILE: &str = "tds-cert.pem";
pub const KEY_FILE: &str = "tds-key.pem";

impl TlsIdentity {
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(pem_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err)?;
        if certs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no certificate in PEM file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err)?;
        Ok(TlsIdentity { certs, key })
    }

    /// A fresh self-signed certificate for `hostnames`, plus its PEM (cert, key).
    pub fn self_signed(hostnames: &[String]) -> io::Result<(Self, String, String)> {
        let ck = rcgen::generate_simple_self_signed(hostnames.to_vec())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let id = TlsIdentity {
            certs: vec![ck.cert.der().clone()],
            key: PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                .map_err(|e| io::Error::other(e.to_string()))?,
        };
        Ok((id, cert_pem, key_pem))
    }

    /// Loads `dir/tds-cert.pem` + `dir/tds-key.pem`, generating and writing a
    /// self-signed pair on first start (the instance keeps it in its data directory).
    pub fn load_or_generate(dir: &Path, hostnames: &[String]) -> io::Result<Self> {
        let (c, k) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if c.exists() && k.exists() {
            return Self::from_pem_files(&c, &k);
        }
        std::fs::create_dir_all(dir)?;
        let (id, cert_pem, key_pem) = Self::self_signed(hostnames)?;
        write_private(&k, key_pem.as_bytes())?;
        std::fs::write(&c, cert_pem)?;
        Ok(id)
    }

    /// rustls config for TDS, no session tickets (clients that wrap TLS in PRELOGIN do
    /// not expect post-handshake messages). TDS 7.x gets TLS 1.2 only, as SQL Server
    /// offers it: FreeTDS/GnuTLS fails TLS 1.3 inside PRELOGIN. `tds8` (TLS first,
    /// ALPN "tds/8.0") gets TLS 1.2 and 1.3.
    pub fn server_config(&self, tds8: bool) -> io::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tds8 {
            &[&rustls::version::TLS12, &rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS12]
        };
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| io::Error::other(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        cfg.send_tls13_tickets = 0;
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        if tds8 {
            cfg.alpn_protocols = vec![b"tds/8.0".to_vec()];
        }
        Ok(Arc::new(cfg))
    }
}

fn pem_err(e: pki_types::pem::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(data)
}

/// Carries TLS records inside PRELOGIN packets until `passthrough` is set.
pub struct PreloginFramed<S> {
    inner: S,
    pub(crate) passthrough: bool,
    // read side: header being assembled, then bytes left in the current packet
    hdr: [u8; HEADER_LEN],
    hdr_filled: usize,
    remaining: usize,
    leftover: Vec<u8>,
    // write side: TLS bytes not yet framed, then framed bytes not yet written
    wbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
}

impl<S> PreloginFramed<S> {
    pub fn new(inner: S) -> Self {
        PreloginFramed {
            inner,
            passthrough: false,
            hdr: [0; HEADER_LEN],
            hdr_filled: 0,
            remaining: 0,
            leftover: Vec::new(),
            wbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
        }
    }
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncWrite + Unpin> PreloginFramed<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.wbuf.is_empty() && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            let data = std::mem::take(&mut self.wbuf);
            encode_packets(&mut self.out, PacketType::PreLogin, &data, 4096, 0, 1, true);
        }
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PreloginFramed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.passthrough {
            if !this.leftover.is_empty() {
                let n = this.leftover.len().min(buf.remaining());
                buf.put_slice(&this.leftover[..n]);
                this.leftover.drain(..n);
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Never wait for the peer while our own handshake bytes sit unsent.
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        while this.remaining == 0 {
            while this.hdr_filled < HEADER_LEN {
                let mut rb = ReadBuf::new(&mut this.hdr[this.hdr_filled..]);
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Ok(())); // EOF
                }
                this.hdr_filled += n;
                // A raw TLS record (content types 20-23) instead of a TDS packet: the
                // peer finished its handshake. rustls may read ahead past its last
                // handshake message, so this is where the framing must end.
                if (20..=23).contains(&this.hdr[0]) {
                    this.leftover
                        .extend_from_slice(&this.hdr[..this.hdr_filled]);
                    this.hdr_filled = 0;
                    this.passthrough = true;
                    let n = this.leftover.len().min(buf.remaining());
                    buf.put_slice(&this.leftover[..n]);
                    this.leftover.drain(..n);
                    return Poll::Ready(Ok(()));
                }
            }
            this.hdr_filled = 0;
            let h = PacketHeader::decode(&this.hdr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            this.remaining = h.payload_len();
        }
        let want = this.remaining.min(buf.remaining());
        let n = {
            let un = buf.initialize_unfilled_to(want);
            let mut rb = ReadBuf::new(un);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            rb.filled().len()
        };
        if n == 0 && want > 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.advance(n);
        this.remaining -= n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PreloginFramed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.passthrough {
            return Pin::new(&mut self.inner).poll_write(cx, data);
        }
        self.wbuf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
