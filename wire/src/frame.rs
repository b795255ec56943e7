//! Message framing on QUIC streams: a 4-byte big-endian length, then that many bytes of
//! JSON. A stream carries any number of frames; finishing it ends the sequence.

use quinn::{ReadExactError, RecvStream, SendStream};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::WireError;

/// The largest frame body accepted or sent: 16 MiB.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Writes one message as a frame.
pub async fn send<T: Serialize>(stream: &mut SendStream, msg: &T) -> Result<(), WireError> {
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, msg).map_err(WireError::Encode)?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    // MAX_FRAME fits in a u32, so this never truncates.
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    stream.write_all(&frame).await?;
    Ok(())
}

/// Reads one message; `None` if the peer finished the stream cleanly between frames.
pub async fn recv<T: DeserializeOwned>(stream: &mut RecvStream) -> Result<Option<T>, WireError> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(_)) => return Err(WireError::TruncatedFrame),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    let mut body = vec![0u8; len];
    match stream.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => return Err(WireError::TruncatedFrame),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(WireError::Decode)
}

/// Sends `req` on a fresh bidirectional stream, finishes the sending side and waits for
/// one reply: the request/response pattern.
pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
    conn: &quinn::Connection,
    req: &Req,
) -> Result<Resp, WireError> {
    let (mut tx, mut rx) = conn.open_bi().await?;
    send(&mut tx, req).await?;
    tx.finish()?;
    recv(&mut rx).await?.ok_or(WireError::NoMessage)
}

/// Sends `resp` as the one reply on a request's stream and finishes it.
pub async fn reply<Resp: Serialize>(stream: &mut SendStream, resp: &Resp) -> Result<(), WireError> {
    send(stream, resp).await?;
    stream.finish()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde::Deserialize;
    use tokio::task::JoinSet;

    use super::*;
    use crate::testkit::{within, Pair};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Msg {
        id: u32,
        text: String,
    }

    #[tokio::test]
    async fn frames_round_trip_until_the_stream_ends() {
        let pair = Pair::new().await;
        let msgs: Vec<Msg> = (0..3)
            .map(|id| Msg {
                id,
                text: "é".repeat(id as usize * 1000),
            })
            .collect();
        let (mut tx, _rx) = pair.client.open_bi().await.unwrap();
        for msg in &msgs {
            send(&mut tx, msg).await.unwrap();
        }
        tx.finish().unwrap();
        let (_tx, mut rx) = within(pair.server.accept_bi()).await.unwrap();
        for msg in &msgs {
            assert_eq!(
                within(recv::<Msg>(&mut rx)).await.unwrap().as_ref(),
                Some(msg)
            );
        }
        assert_eq!(within(recv::<Msg>(&mut rx)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_on_both_sides() {
        let pair = Pair::new().await;
        let (mut tx, _rx) = pair.client.open_bi().await.unwrap();
        let err = send(&mut tx, &"x".repeat(MAX_FRAME)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "a frame of 16777218 bytes exceeds the limit of 16777216 bytes"
        );
        // Nothing of the refused frame went out: the stream is still usable.
        send(&mut tx, &1u8).await.unwrap();
        // A peer that ignores the limit is stopped at the length prefix.
        tx.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        tx.finish().unwrap();
        let (_tx, mut rx) = within(pair.server.accept_bi()).await.unwrap();
        assert_eq!(within(recv::<u8>(&mut rx)).await.unwrap(), Some(1));
        let err = within(recv::<u8>(&mut rx)).await.unwrap_err();
        assert!(matches!(err, WireError::FrameTooLarge { len, .. } if len == MAX_FRAME + 1));
    }

    #[tokio::test]
    async fn truncated_and_undecodable_frames_are_errors() {
        let pair = Pair::new().await;
        let (mut tx, _rx) = pair.client.open_bi().await.unwrap();
        send(&mut tx, &"not a number").await.unwrap();
        tx.write_all(&[0, 0, 0, 10, b'1']).await.unwrap();
        tx.finish().unwrap();
        let (_tx, mut rx) = within(pair.server.accept_bi()).await.unwrap();
        let err = within(recv::<u32>(&mut rx)).await.unwrap_err();
        assert!(matches!(err, WireError::Decode(_)), "{err}");
        let err = within(recv::<u32>(&mut rx)).await.unwrap_err();
        assert_eq!(err.to_string(), "the stream ended in the middle of a frame");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_requests_share_one_connection() {
        let pair = Pair::new().await;
        let server = pair.server.clone();
        tokio::spawn(async move {
            while let Ok((mut tx, mut rx)) = server.accept_bi().await {
                tokio::spawn(async move {
                    let n: u64 = recv(&mut rx).await.unwrap().unwrap();
                    reply(&mut tx, &(n * 2)).await.unwrap();
                });
            }
        });
        let mut requests = JoinSet::new();
        for n in 0..1000u64 {
            let conn = pair.client.clone();
            requests.spawn(async move { (n, request::<_, u64>(&conn, &n).await) });
        }
        let answered = within(async {
            let mut answered = 0;
            while let Some(joined) = requests.join_next().await {
                let (n, doubled) = joined.unwrap();
                assert_eq!(doubled.unwrap(), n * 2);
                answered += 1;
            }
            answered
        })
        .await;
        assert_eq!(answered, 1000);
    }

    #[tokio::test]
    async fn a_request_without_reply_is_an_error() {
        let pair = Pair::new().await;
        let server = pair.server.clone();
        tokio::spawn(async move {
            let (mut tx, _rx) = server.accept_bi().await.unwrap();
            tx.finish().unwrap();
            // Keep the stream until the client has read its end.
            let _ = tx.stopped().await;
        });
        let err = within(request::<_, u8>(&pair.client, &0u8))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the peer closed the stream without sending a message"
        );
    }
}
