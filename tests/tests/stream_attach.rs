//! Attach through the streaming server: output of a running container, and a TTY container's
//! input and window size, reached through the container's monitor.

mod stream_client;

use std::time::Duration;

use berth_proto::cri::{AttachRequest, StopContainerRequest};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config};
use stream_client::{StreamUrl, WsClient, WsMessage, read_remote_output, read_stdout_until};

const V5: &str = "v5.channel.k8s.io";

async fn attach_url(pods: &PodDaemon, container: &str, tty: bool, stdin: bool) -> StreamUrl {
    let response = pods
        .runtime()
        .await
        .attach(AttachRequest {
            container_id: container.to_string(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|status| panic!("Attach failed: {status:?}\nlog:\n{}", pods.daemon.log()))
        .into_inner();
    StreamUrl::parse(&response.url)
}

#[tokio::test]
async fn attach_follows_output_until_exit() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods
        .run_busybox(
            "printer",
            &["sh", "-c", "i=0; while [ $i -lt 40 ]; do echo line $i; echo warn $i >&2; i=$((i+1)); sleep 0.1; done"],
        )
        .await;

    let url = attach_url(&pods, &container, false, false).await;
    let mut client = WsClient::connect(&url, &[V5])
        .await
        .expect("attach upgrade");
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut status = None;
    while let Some(message) = client.recv().await {
        match message {
            WsMessage::Data(1, data) => stdout.push_str(&String::from_utf8_lossy(&data)),
            WsMessage::Data(2, data) => stderr.push_str(&String::from_utf8_lossy(&data)),
            WsMessage::Data(3, data) => status = Some(String::from_utf8_lossy(&data).to_string()),
            WsMessage::Data(..) => {}
            WsMessage::Close(_) => break,
        }
    }

    // Attach shows output from the moment it connects, so the first lines may be missing.
    assert!(stdout.contains("line 39\n"), "stdout: {stdout:?}");
    assert!(stderr.contains("warn 39\n"), "stderr: {stderr:?}");
    assert!(
        !stdout.contains("warn"),
        "stderr leaked into stdout: {stdout:?}"
    );
    assert_eq!(
        status.as_deref(),
        Some(r#"{"metadata":{},"status":"Success"}"#)
    );
    let exited = pods.wait_exited(&container, Duration::from_secs(10)).await;
    assert_eq!(exited.exit_code, 0);
}

#[tokio::test]
async fn attach_to_tty_takes_input_and_resize() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("ttyshell")).await;
    let mut config = container_config("shell", &image("busybox"), &["sh"]);
    config.tty = true;
    config.stdin = true;
    let container = pods
        .create_and_start(&sandbox, pods.pod_config("ttyshell"), config)
        .await;

    let url = attach_url(&pods, &container, true, true).await;
    let mut client = WsClient::connect(&url, &[V5])
        .await
        .expect("attach upgrade");
    client.send(4, br#"{"Width":90,"Height":30}"#).await;
    // The resize and the typed line take different paths to the container; retry the
    // command until the terminal reports the new size.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        client.send(0, b"stty size\r").await;
        let seen = read_stdout_until(&mut client, "\n").await;
        if seen.contains("30 90") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "terminal never reported 30 90; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    client.send(0, b"echo typed-$((6*7))\r").await;
    read_stdout_until(&mut client, "typed-42").await;
    client.send(0, b"exit 5\r").await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.status_kind(), "Success", "{:?}", output.status);
    let exited = pods.wait_exited(&container, Duration::from_secs(10)).await;
    assert_eq!(exited.exit_code, 5);
}

#[tokio::test]
async fn attach_to_stopped_container_fails() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("stopped", &["sleep", "600"]).await;
    let mut client = pods.runtime().await;
    client
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");

    let err = client
        .attach(AttachRequest {
            container_id: container.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("attach to a stopped container must fail");

    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

/// A container created with stdin and stdin_once reads what an attach client sends, and sees
/// end of file when that client closes its stdin.
#[tokio::test]
async fn attach_feeds_stdin_once() {
    let pods = PodDaemon::start("").await;
    pods.daemon
        .pull(&image("busybox"))
        .await
        .expect("pull busybox");
    let sandbox = pods.run_pod(pods.pod_config("reader")).await;
    let command = "read line; echo got:$line; if read more; then echo more:$more; else echo eof; fi";
    let mut config = container_config("reader", &image("busybox"), &["sh", "-c", command]);
    config.stdin = true;
    config.stdin_once = true;
    let container = pods
        .create_and_start(&sandbox, pods.pod_config("reader"), config)
        .await;

    let url = attach_url(&pods, &container, false, true).await;
    let mut client = WsClient::connect(&url, &[V5])
        .await
        .expect("attach upgrade");
    client.send(0, b"hello\n").await;
    read_stdout_until(&mut client, "got:hello").await;
    // v5: a message on channel 255 with payload [0] closes the client's stdin.
    client.send(255, &[0]).await;
    read_stdout_until(&mut client, "eof").await;

    let exited = pods.wait_exited(&container, Duration::from_secs(10)).await;
    assert_eq!(exited.exit_code, 0, "the shell should exit after reading end of file");
}
