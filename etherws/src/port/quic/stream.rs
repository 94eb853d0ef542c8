//! The CONNECT request stream of a session, server's or client's, split in its two halves:
//! what the session sends capsules on and reads them from.

use bytes::{Buf, Bytes};
use h3::error::StreamError;

type Bidi = h3_quinn::BidiStream<Bytes>;
type Send = h3_quinn::SendStream<Bytes>;
type Recv = h3_quinn::RecvStream;

/// A session's request stream, as the listener or the dialer left it after the 200.
pub(crate) enum ConnectStream {
    /// A server port's: the client's CONNECT.
    Server(h3::server::RequestStream<Bidi, Bytes>),
    /// A client port's: its own CONNECT.
    Client(h3::client::RequestStream<Bidi, Bytes>),
}

/// The sending half: capsules go out as DATA frames.
pub(crate) enum SendHalf {
    Server(h3::server::RequestStream<Send, Bytes>),
    Client(h3::client::RequestStream<Send, Bytes>),
}

/// The receiving half: DATA frames, which hold the peer's capsules.
pub(crate) enum RecvHalf {
    Server(h3::server::RequestStream<Recv, Bytes>),
    Client(h3::client::RequestStream<Recv, Bytes>),
}

impl ConnectStream {
    /// The stream's id (its quarter is the datagrams' prefix).
    pub(crate) fn id(&self) -> u64 {
        match self {
            ConnectStream::Server(s) => s.id().into_inner(),
            ConnectStream::Client(s) => s.id().into_inner(),
        }
    }

    /// Its two halves, to be driven apart.
    pub(crate) fn split(self) -> (SendHalf, RecvHalf) {
        match self {
            ConnectStream::Server(s) => {
                let (tx, rx) = s.split();
                (SendHalf::Server(tx), RecvHalf::Server(rx))
            }
            ConnectStream::Client(s) => {
                let (tx, rx) = s.split();
                (SendHalf::Client(tx), RecvHalf::Client(rx))
            }
        }
    }
}

impl SendHalf {
    /// Sends `data` in one DATA frame.
    pub(crate) async fn send(&mut self, data: Bytes) -> Result<(), StreamError> {
        match self {
            SendHalf::Server(s) => s.send_data(data).await,
            SendHalf::Client(s) => s.send_data(data).await,
        }
    }
}

impl RecvHalf {
    /// The next DATA chunk, as `Bytes`; `None` once the peer finished the stream.
    pub(crate) async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        Ok(match self {
            RecvHalf::Server(s) => s
                .recv_data()
                .await?
                .map(|mut b| b.copy_to_bytes(b.remaining())),
            RecvHalf::Client(s) => s
                .recv_data()
                .await?
                .map(|mut b| b.copy_to_bytes(b.remaining())),
        })
    }
}
