use super::{StreamingListener, StreamingTransport};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsStream};

/// PATCH(milliwatt): how long a TLS handshake may take, and how many may run at once.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HANDSHAKES: usize = 256;

type Handshaken = (io::Result<TlsStream<TcpStream>>, SocketAddr);

/// PATCH(milliwatt): the handshakes run in tasks of their own, each bounded by
/// `HANDSHAKE_TIMEOUT`, at most `MAX_HANDSHAKES` at once: 0.9.2 ran each in the accept loop, so
/// one client that connected and never finished its handshake stopped every later connection.
pub(super) struct TlsAcceptStream {
    acceptor: TlsAcceptor,
    listener: TcpListener,
    done_tx: mpsc::UnboundedSender<Handshaken>,
    done_rx: mpsc::UnboundedReceiver<Handshaken>,
    running: Arc<AtomicUsize>,
}

impl TlsAcceptStream {
    pub(super) fn new(acceptor: TlsAcceptor, listener: TcpListener) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            acceptor,
            listener,
            done_tx,
            done_rx,
            running: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl StreamingListener for TlsAcceptStream {
    type Transport = TlsStream<TcpStream>;

    async fn accept(&mut self) -> io::Result<(Self::Transport, SocketAddr)> {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (stream, remote) = accepted?;
                    if self.running.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
                        log::warn!("TLS connection from {remote} closed at once: {MAX_HANDSHAKES} handshakes running");
                        continue;
                    }
                    self.running.fetch_add(1, Ordering::Relaxed);
                    let (acceptor, tx, running) =
                        (self.acceptor.clone(), self.done_tx.clone(), self.running.clone());
                    tokio::spawn(async move {
                        let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => Ok(TlsStream::Server(stream)),
                            Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS handshake with {remote}: {e}"))),
                            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("TLS handshake with {remote} timed out"))),
                        };
                        running.fetch_sub(1, Ordering::Relaxed);
                        let _ = tx.send((result, remote));
                    });
                }
                Some((result, remote)) = self.done_rx.recv() => {
                    return result.map(|stream| (stream, remote));
                }
            }
        }
    }
}

impl StreamingTransport for TlsStream<TcpStream> {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.get_ref().0.local_addr()
    }
}
