//! `p2pf pub TOPIC` and `p2pf sub TOPIC`: gossip as lines on stdin and stdout.

use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncBufReadExt as _;

use crate::cli::{PubArgs, SubArgs};
use crate::client;
use crate::error::CliError;
use crate::output::Output;
use crate::signal;

#[derive(Serialize)]
struct Published {
    topic: String,
    id: String,
    bytes: usize,
    confirmed_by: usize,
}

#[derive(Serialize)]
struct Received {
    topic: String,
    id: String,
    author: String,
    data: String,
    hops: u8,
}

#[derive(Serialize)]
struct Subscribed {
    event: &'static str,
    topic: String,
    peer_id: String,
}

/// Publishes each message (the arguments, or each stdin line) once `--subscribers`
/// peers of the topic are known, and waits for as many signed delivery acknowledgements.
pub(crate) async fn publish(out: Output, args: &PubArgs) -> Result<(), CliError> {
    let messages = if args.message.is_empty() {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut v = Vec::new();
        while let Some(line) = lines.next_line().await.map_err(|source| CliError::Local {
            what: "reading messages from",
            path: "stdin".into(),
            source,
        })? {
            v.push(line);
        }
        v
    } else {
        vec![args.message.join(" ")]
    };
    let (node, _) = client::start(&args.client).await?;
    let result = client::bounded(&args.client, "publishing", async {
        node.wait_for_topic_peers(&args.topic, usize::from(args.subscribers))
            .await?;
        for m in &messages {
            let delivery = node
                .publish_confirmed(
                    &args.topic,
                    m.as_bytes().to_vec(),
                    args.subscribers,
                    Duration::from_secs(args.client.timeout),
                )
                .await?;
            if !delivery.complete {
                return Err(CliError::Failed(format!(
                    "only {} of {} subscriber(s) confirmed delivery",
                    delivery.ackers.len(),
                    args.subscribers
                )));
            }
            let p = Published {
                topic: args.topic.clone(),
                id: delivery.id.to_string(),
                bytes: m.len(),
                confirmed_by: delivery.ackers.len(),
            };
            out.emit(&p, |p| {
                format!(
                    "published {} bytes, confirmed by {}",
                    p.bytes, p.confirmed_by
                )
            });
        }
        Ok(())
    })
    .await;
    node.shutdown().await;
    result
}

/// Prints each message on the topic as a line until `--count` arrived, or SIGINT/SIGTERM.
pub(crate) async fn subscribe(out: Output, args: &SubArgs) -> Result<(), CliError> {
    let (node, _) = client::start(&args.client).await?;
    let result = async {
        let mut sub = node.subscribe(&args.topic).await?;
        let ready = Subscribed {
            event: "subscribed",
            topic: args.topic.clone(),
            peer_id: node.peer_id().to_string(),
        };
        if out.is_json() {
            out.emit(&ready, |_| String::new());
        } else {
            eprintln!("subscribed to '{}' as {}", ready.topic, ready.peer_id);
        }
        let stop = signal::shutdown_signal();
        tokio::pin!(stop);
        let mut seen = 0u64;
        while args.count.is_none_or(|c| seen < c) {
            let msg = tokio::select! {
                _ = &mut stop => break,
                m = sub.recv() => m.ok_or(p2p_foundation::Error::Shutdown)?,
            };
            seen += 1;
            let r = Received {
                topic: msg.topic().as_str().to_owned(),
                id: msg.id.to_string(),
                author: msg.author().to_string(),
                data: String::from_utf8_lossy(msg.data()).into_owned(),
                hops: msg.hops,
            };
            out.emit(&r, |r| r.data.clone());
        }
        Ok(())
    }
    .await;
    node.shutdown().await;
    result
}
