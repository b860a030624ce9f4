//! Exec through the streaming server over WebSocket: stdin, output, exit codes, terminals,
//! tokens, and what a client that goes away leaves behind.

mod stream_client;

use std::time::Duration;

use berth_proto::cri::{ExecRequest, StopContainerRequest};
use berth_tests::pods::PodDaemon;
use stream_client::{StreamUrl, WsClient, WsMessage, read_remote_output};

const V4: &str = "v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";

/// Requests an exec URL with stdout, and stderr unless `tty`.
async fn exec_url(
    pods: &PodDaemon,
    container: &str,
    command: &[&str],
    tty: bool,
    stdin: bool,
) -> StreamUrl {
    let response = pods
        .runtime()
        .await
        .exec(ExecRequest {
            container_id: container.to_string(),
            cmd: command.iter().map(|part| part.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "Exec {command:?} failed: {status:?}\nlog:\n{}",
                pods.daemon.log()
            )
        })
        .into_inner();
    StreamUrl::parse(&response.url)
}

async fn connect(url: &StreamUrl, protocols: &[&str]) -> WsClient {
    WsClient::connect(url, protocols)
        .await
        .unwrap_or_else(|response| panic!("WebSocket upgrade of {url:?} failed: {response:?}"))
}

#[tokio::test]
async fn exec_streams_stdin_and_exit_code() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("execpod", &["sleep", "600"]).await;

    let url = exec_url(
        &pods,
        &container,
        &["sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"],
        false,
        true,
    )
    .await;
    let mut client = connect(&url, &[V5, V4]).await;
    assert_eq!(
        client.protocol.as_deref(),
        Some(V5),
        "the server takes the client's first choice"
    );
    client.send(0, b"hello\n").await;
    let output = read_remote_output(&mut client).await;

    assert_eq!(output.stdout_text(), "got hello\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
    assert_eq!(
        output.status_kind(),
        "Failure",
        "status: {:?}",
        output.status
    );
    let status = output.status.as_ref().unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("command terminated with non-zero exit code"),
        "message: {}",
        status["message"]
    );
    assert_eq!(output.exit_code(), Some(3));
    assert_eq!(output.closed_with, Some(1000));

    // A used token is gone.
    let reused = WsClient::connect(&url, &[V5])
        .await
        .err()
        .expect("a reused URL must fail");
    assert_eq!(reused.status, 404, "{reused:?}");
}

#[tokio::test]
async fn exec_success_and_stdin_close() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("execpod", &["sleep", "600"]).await;

    // v4: one line of stdin, then success.
    let url = exec_url(
        &pods,
        &container,
        &["sh", "-c", "read x; echo $x-$BERTH_TEST"],
        false,
        true,
    )
    .await;
    let mut client = connect(&url, &[V4]).await;
    assert_eq!(client.protocol.as_deref(), Some(V4));
    client.send(0, b"line\n").await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.stdout_text(), "line-1\n");
    assert_eq!(
        output.status,
        Some(serde_json::json!({"metadata": {}, "status": "Success"}))
    );

    // v5: closing stdin with [255, 0] ends cat's input.
    let url = exec_url(&pods, &container, &["cat"], false, true).await;
    let mut client = connect(&url, &[V5]).await;
    client.send(0, b"abc").await;
    client.send(0, b"def").await;
    client.send(255, &[0]).await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.stdout_text(), "abcdef");
    assert_eq!(output.exit_code(), Some(0));

    // Output larger than one frame arrives whole and in order.
    let url = exec_url(
        &pods,
        &container,
        &["sh", "-c", "seq 1 20000"],
        false,
        false,
    )
    .await;
    let mut client = connect(&url, &[V5]).await;
    let output = read_remote_output(&mut client).await;
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert_eq!(output.stdout_text(), expected);
}

/// Types lines into `while read line; do stty size; echo end; done` until `stty size` prints
/// `expected`, and returns the output. runc applies a resize after it happened, so a line
/// typed right after a resize may still see the old size.
async fn wait_for_terminal_size(client: &mut WsClient, expected: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut output = String::new();
    loop {
        client.send(0, b"size\r").await;
        let ends_before = output.matches("end\r\n").count();
        while output.matches("end\r\n").count() == ends_before {
            let message = tokio::time::timeout(Duration::from_secs(10), client.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no output for 10 s after typing a line; output: {output:?}")
                });
            match message {
                Some(WsMessage::Data(1, data)) => output.push_str(&String::from_utf8_lossy(&data)),
                Some(WsMessage::Data(..)) => {}
                other => panic!("session ended ({other:?}); output: {output:?}"),
            }
        }
        let last_answer = output.rsplit("size\r\n").next().unwrap_or_default();
        if last_answer.starts_with(&format!("{expected}\r\n")) {
            return output;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the terminal never reported {expected}; output: {output:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tty_exec_reports_resized_window() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("ttypod", &["sleep", "600"]).await;

    // The size sent right after connecting is the terminal's size from the start.
    let url = exec_url(&pods, &container, &["sh", "-c", "stty size"], true, true).await;
    let mut client = connect(&url, &[V5]).await;
    client.send(4, br#"{"Width":100,"Height":40}"#).await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.stdout_text(), "40 100\r\n");
    assert_eq!(output.exit_code(), Some(0));

    let url = exec_url(
        &pods,
        &container,
        &[
            "sh",
            "-c",
            "while read line; do stty size; echo end; done; exit 4",
        ],
        true,
        true,
    )
    .await;
    let mut client = connect(&url, &[V5]).await;
    client.send(4, br#"{"Width":100,"Height":40}"#).await;
    let seen = wait_for_terminal_size(&mut client, "40 100").await;
    assert!(
        !seen.contains('\0'),
        "the terminal output has a NUL byte: {seen:?}"
    );

    client.send(4, br#"{"Width":132,"Height":50}"#).await;
    wait_for_terminal_size(&mut client, "50 132").await;

    // Ctrl-D at the start of a line is end of input on a terminal.
    client.send(0, b"\x04").await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.exit_code(), Some(4), "status: {:?}", output.status);
    assert!(
        output.stderr.is_empty(),
        "a terminal has no separate stderr"
    );
}

#[tokio::test]
async fn exec_request_errors() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("errpod", &["sleep", "600"]).await;
    let mut client = pods.runtime().await;

    let tty_and_stderr = client
        .exec(ExecRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .expect_err("tty with stderr must be rejected");
    assert_eq!(tty_and_stderr.code(), tonic::Code::InvalidArgument);

    let unknown = client
        .exec(ExecRequest {
            container_id: "no-such-container".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("an unknown container must be rejected");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let url = exec_url(&pods, &container, &["true"], false, false).await;
    let wrong_token = StreamUrl {
        address: url.address.clone(),
        path_and_query: "/exec/0000000000000000000000000000000000000000000000000000000000000000"
            .into(),
    };
    let response = WsClient::connect(&wrong_token, &[V5])
        .await
        .err()
        .expect("an unknown token must fail");
    assert_eq!(response.status, 404);
    let wrong_route = StreamUrl {
        address: url.address.clone(),
        path_and_query: url.path_and_query.replace("/exec/", "/attach/"),
    };
    let response = WsClient::connect(&wrong_route, &[V5])
        .await
        .err()
        .expect("an exec token is not an attach token");
    assert_eq!(response.status, 404);

    let url = exec_url(&pods, &container, &["true"], false, false).await;
    let response = WsClient::connect(&url, &["channel.k8s.io"])
        .await
        .err()
        .expect("v1 channels are not served");
    assert_eq!(response.status, 400, "{response:?}");

    client
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
    let stopped = client
        .exec(ExecRequest {
            container_id: container.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("exec into a stopped container must fail");
    assert_eq!(
        stopped.code(),
        tonic::Code::FailedPrecondition,
        "{stopped:?}"
    );
    assert!(
        stopped.message().contains("not running"),
        "{}",
        stopped.message()
    );
}

/// Returns the host processes whose command line mentions `needle` and `exec`.
fn host_exec_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) && text.contains(" exec ") {
            found.push(text);
        }
    }
    found
}

#[tokio::test]
async fn disconnected_client_leaves_no_exec_behind() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("gonepod", &["sleep", "600"]).await;

    for tty in [false, true] {
        let marker = if tty { "1231" } else { "1232" };
        let url = exec_url(&pods, &container, &["sleep", marker], tty, true).await;
        let mut client = connect(&url, &[V5]).await;
        // The first message marks the open session, and the command runs after it.
        let first = client.recv().await;
        assert!(
            matches!(first, Some(WsMessage::Data(1, _))),
            "first message: {first:?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !pods
            .exec_stdout(&container, &["ps", "-o", "args"])
            .await
            .contains(&format!("sleep {marker}"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "exec'd sleep {marker} never showed up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        client.abandon();

        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let processes = pods.exec_stdout(&container, &["ps", "-o", "args"]).await;
            let runc_left = host_exec_processes(&container);
            if !processes.contains(&format!("sleep {marker}")) && runc_left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tty={tty}: left after the client went away:\n{processes}\nrunc: {runc_left:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn expired_idle_and_excess_sessions() {
    let pods = PodDaemon::start(
        "[stream]\ntoken_ttl_seconds = 4\nidle_timeout_seconds = 1\nmax_sessions = 1\n",
    )
    .await;
    let (_, container) = pods.run_busybox("limitpod", &["sleep", "600"]).await;

    let expired = exec_url(&pods, &container, &["true"], false, false).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let response = WsClient::connect(&expired, &[V5])
        .await
        .err()
        .expect("an expired URL must fail");
    assert_eq!(response.status, 404);

    // One session at a time: the second gets 503 and keeps its token.
    let first = exec_url(&pods, &container, &["sleep", "1233"], false, true).await;
    let second = exec_url(&pods, &container, &["echo", "second"], false, false).await;
    let mut holder = connect(&first, &[V5]).await;
    let response = WsClient::connect(&second, &[V5])
        .await
        .err()
        .expect("a session beyond the cap must fail");
    assert_eq!(response.status, 503, "{response:?}");

    // The held session sends nothing, so the idle timeout closes it with a status.
    let started = std::time::Instant::now();
    let output = read_remote_output(&mut holder).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "idle session lived {:?}",
        started.elapsed()
    );
    assert_eq!(output.status_kind(), "Failure");
    let message = output.status.as_ref().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("no data for 1 s"), "{message}");
    let processes = pods.exec_stdout(&container, &["ps", "-o", "args"]).await;
    assert!(
        !processes.contains("sleep 1233"),
        "idle exec still runs:\n{processes}"
    );

    // Now the second URL is served; the token survived the 503 within its TTL.
    let mut client = connect(&second, &[V5]).await;
    let output = read_remote_output(&mut client).await;
    assert_eq!(output.stdout_text(), "second\n");
}

#[tokio::test]
async fn spdy_exec_streams_and_exit_code() {
    use stream_client::spdy::{SpdyClient, SpdyFrame};

    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("spdypod", &["sleep", "600"]).await;
    let url = exec_url(
        &pods,
        &container,
        &["sh", "-c", "read x; echo got $x; echo oops >&2; exit 3"],
        false,
        true,
    )
    .await;

    let mut client = SpdyClient::connect(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"])
        .await
        .unwrap_or_else(|response| panic!("SPDY upgrade failed: {response:?}"));
    assert_eq!(client.protocol, "v4.channel.k8s.io");
    // client-go opens the error stream first, then the standard streams.
    let error = client.open(&[("streamType", "error")]).await;
    let stdin = client.open(&[("streamType", "stdin")]).await;
    let stdout = client.open(&[("streamType", "stdout")]).await;
    let stderr = client.open(&[("streamType", "stderr")]).await;
    client.ping(1).await;
    client.send(stdin, b"spdy\n", true).await;

    let mut replies = Vec::new();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut status = Vec::new();
    let mut pinged = false;
    let mut finished = Vec::new();
    while let Some(frame) = client.next_frame().await {
        match frame {
            SpdyFrame::SynReply { stream_id, headers } => {
                assert!(headers.is_empty(), "reply headers: {headers:?}");
                replies.push(stream_id);
            }
            SpdyFrame::Data {
                stream_id,
                fin,
                data,
            } => {
                assert!(
                    replies.contains(&stream_id),
                    "data on stream {stream_id} before its reply"
                );
                match stream_id {
                    id if id == stdout => out.extend(data),
                    id if id == stderr => err.extend(data),
                    id if id == error => status.extend(data),
                    other => panic!("data on unexpected stream {other}"),
                }
                if fin {
                    finished.push(stream_id);
                }
            }
            SpdyFrame::Ping { id } => pinged = id == 1,
            SpdyFrame::GoAway => break,
            other => panic!("unexpected frame {other:?}"),
        }
    }

    assert_eq!(replies, vec![error, stdin, stdout, stderr]);
    assert!(pinged, "the server must echo a client PING");
    assert_eq!(String::from_utf8_lossy(&out), "got spdy\n");
    assert_eq!(String::from_utf8_lossy(&err), "oops\n");
    let status: serde_json::Value = serde_json::from_slice(&status).expect("status JSON");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    for stream in [stdout, stderr, error] {
        assert!(
            finished.contains(&stream),
            "stream {stream} was not closed with FIN"
        );
    }
}

#[tokio::test]
async fn spdy_protocol_mismatch_is_forbidden() {
    use stream_client::spdy::SpdyClient;

    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("spdyold", &["sleep", "600"]).await;
    let url = exec_url(&pods, &container, &["true"], false, false).await;

    let response = SpdyClient::connect(&url, &["channel.k8s.io"])
        .await
        .err()
        .expect("v1 must be refused");

    assert_eq!(response.status, 403, "{response:?}");
    assert_eq!(
        response.header("x-accepted-stream-protocol-versions"),
        Some("v4.channel.k8s.io")
    );
}
