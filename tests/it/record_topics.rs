//! Record topics the broker accepts whatever the frame topic (issue 8, finding 2): a record topic
//! Mosquitto refuses drops the daemon's connection, and the unacked frame comes back forever.

use std::time::Duration;

use rumqttc::QoS;
use sha2::{Digest, Sha256};

use crate::support::daemon::{Daemon, json, settings};
use crate::support::{Broker, Subscriber, fixture, publish_once};

const RECORD_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_too_deep_for_its_record_topic_gets_a_folded_one_on_the_same_connection() {
    let broker = Broker::new();
    let out = tempfile::tempdir().expect("a temp dir");
    let daemon = Daemon::start(settings(&broker.url(), &["cams/#"], out.path())).await;
    let mut records = Subscriber::connect(&broker.url(), "mqimg/#", QoS::AtLeastOnce).await;

    // 201 levels: the deepest topic Mosquitto 2.0.11 takes in a PUBLISH (200 separators; measured), so
    // `mqimg/results/{topic}` (203 levels) is one it refuses.
    let levels = ["l"; 200];
    let topic = format!("cams/{}", levels.join("/"));
    publish_once(
        &broker.url(),
        &topic,
        fixture("seed/seed-frame.jpg"),
        QoS::AtLeastOnce,
    )
    .await;
    let message = records.recv(RECORD_WAIT).await;

    let record = json(&message);
    assert_eq!(record["topic"], topic.as_str());
    assert_eq!(record["width"], 100, "{record}");
    // 128 levels: the prefix, the first 125 levels of the frame topic, and the other 76 folded.
    let rest = levels[124..].join("/");
    let hash: String = Sha256::digest(rest.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expected = format!(
        "mqimg/results/cams/{}/%rest-76-levels~{}",
        levels[..124].join("/"),
        &hash[..16]
    );
    assert_eq!(message.topic, expected);
    assert_eq!(message.topic.split('/').count(), 128);

    publish_once(
        &broker.url(),
        "cams/door",
        fixture("seed/seed-frame.jpg"),
        QoS::AtLeastOnce,
    )
    .await;
    let next = records.recv(RECORD_WAIT).await;
    assert_eq!(next.topic, "mqimg/results/cams/door");
    assert_eq!(
        daemon.metrics.connections.get(),
        1,
        "the daemon reconnected: the broker dropped it"
    );
    daemon.stop().await;
}
