//! Containers: users and groups, working directory, environment, read-only root, host mounts,
//! TTY logs, listing, status, events, log reopening, ExecSync limits, stops and exit codes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_proto::cri::{
    ContainerConfig, ContainerEventType, ContainerFilter, ContainerState, ContainerStateValue, ExecSyncRequest,
    GetEventsRequest, Int64Value, KeyValue, LinuxContainerSecurityContext, ListContainersRequest, Mount,
    RemoveContainerRequest, ReopenContainerLogRequest, StopContainerRequest, StreamContainersRequest,
};
use berth_tests::image;
use berth_tests::pods::{PodDaemon, container_config, log_messages, wait_for_log};
use tonic::Code;

const EXIT_WAIT: Duration = Duration::from_secs(20);

fn security(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// Runs `config` as the only container of a new pod named `pod`, waits for it to exit with 0,
/// and returns the messages of its log.
async fn run_to_completion(pods: &PodDaemon, pod: &str, config: ContainerConfig) -> Vec<String> {
    let name = config.metadata.as_ref().map(|metadata| metadata.name.clone()).unwrap_or_default();
    let sandbox = pods.run_pod(pods.pod_config(pod)).await;
    let container = pods.create_and_start(&sandbox, pods.pod_config(pod), config).await;
    let status = pods.wait_exited(&container, EXIT_WAIT).await;
    let messages = log_messages(&pods.log_dir(pod).join(format!("{name}.log")));
    assert_eq!(status.exit_code, 0, "container {name} failed; log: {messages:?}");
    messages
}

async fn pull(pods: &PodDaemon, name: &str) {
    pods.daemon.pull(&image(name)).await.unwrap_or_else(|status| panic!("pull {name}: {status:?}"));
}

#[tokio::test]
async fn user_from_image() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "nonroot").await;
    let config = container_config("main", &image("nonroot"), &["sh", "-c", "id -u; id -un; id -g"]);

    let lines = run_to_completion(&pods, "imageuser", config).await;

    assert_eq!(lines, ["1000", "app", "1000"], "uid, user name and gid of the image's USER app");
}

#[tokio::test]
async fn run_as_username() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config("main", &image("busybox"), &["sh", "-c", "id -u; id -un; id -g"]);
    security(&mut config).run_as_username = "app".to_string();

    let lines = run_to_completion(&pods, "username", config).await;

    assert_eq!(lines, ["1000", "app", "1000"], "uid, user name and gid of run_as_username app");
}

#[tokio::test]
async fn run_as_user_and_group() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config("main", &image("busybox"), &["sh", "-c", "id -u; id -un; id -g"]);
    security(&mut config).run_as_user = Some(Int64Value { value: 1000 });
    security(&mut config).run_as_group = Some(Int64Value { value: 2000 });

    let lines = run_to_completion(&pods, "uidgid", config).await;

    assert_eq!(lines, ["1000", "app", "2000"], "uid 1000 (app) with run_as_group 2000");
}

#[tokio::test]
async fn supplemental_groups() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config("main", &image("busybox"), &["id", "-G"]);
    security(&mut config).run_as_user = Some(Int64Value { value: 1000 });
    security(&mut config).supplemental_groups = vec![3000, 4000];

    let lines = run_to_completion(&pods, "groups", config).await;

    assert_eq!(lines.len(), 1, "one line from id -G: {lines:?}");
    let groups: BTreeSet<&str> = lines[0].split_whitespace().collect();
    assert!(groups.contains("1000"), "primary group 1000 of user app: {groups:?}");
    assert!(groups.contains("3000"), "supplemental group 3000: {groups:?}");
    assert!(groups.contains("4000"), "supplemental group 4000: {groups:?}");
    assert_eq!(groups.len(), 3, "no other groups: {groups:?}");
}

#[tokio::test]
async fn working_dir() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config("main", &image("busybox"), &["pwd"]);
    config.working_dir = "/srv/app".to_string();

    let lines = run_to_completion(&pods, "workdir", config).await;

    assert_eq!(lines, ["/srv/app"], "working dir, created although the image lacks it");
}

#[tokio::test]
async fn env_overrides_image() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config(
        "main",
        &image("busybox"),
        &["sh", "-c", "echo \"$PATH\"; echo \"$GREETING\"; echo \"$HOSTNAME\"; env | grep -c '^PATH='"],
    );
    config.envs.push(KeyValue {
        key: "PATH".to_string(),
        value: b"/opt/bin:/bin".to_vec(),
    });
    config.envs.push(KeyValue {
        key: "GREETING".to_string(),
        value: b"hello world".to_vec(),
    });

    let lines = run_to_completion(&pods, "envpod", config).await;

    assert_eq!(lines.first().map(String::as_str), Some("/opt/bin:/bin"), "PATH replaces the image's: {lines:?}");
    assert_eq!(lines.get(1).map(String::as_str), Some("hello world"), "GREETING: {lines:?}");
    assert_eq!(lines.get(2).map(String::as_str), Some("envpod"), "HOSTNAME is the pod's: {lines:?}");
    assert_eq!(lines.get(3).map(String::as_str), Some("1"), "PATH is set once: {lines:?}");
}

#[tokio::test]
async fn readonly_rootfs() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let host_tmp = tempfile::tempdir().expect("create host dir");
    let mut config = container_config("main", &image("busybox"), &["sleep", "600"]);
    security(&mut config).readonly_rootfs = true;
    config.mounts.push(Mount {
        container_path: "/tmp".to_string(),
        host_path: host_tmp.path().display().to_string(),
        ..Default::default()
    });
    let sandbox = pods.run_pod(pods.pod_config("readonly")).await;
    let container = pods.create_and_start(&sandbox, pods.pod_config("readonly"), config).await;

    let root = pods.exec(&container, &["touch", "/written-to-root"]).await;
    assert_ne!(root.exit_code, 0, "writing to / of a read-only rootfs succeeded");
    assert!(
        String::from_utf8_lossy(&root.stderr).contains("Read-only file system"),
        "error for /: {}",
        String::from_utf8_lossy(&root.stderr)
    );
    let hosts = pods.exec(&container, &["sh", "-c", "echo 192.0.2.1 extra >> /etc/hosts"]).await;
    assert_ne!(hosts.exit_code, 0, "/etc/hosts is read-only with a read-only rootfs");

    let tmp = pods.exec(&container, &["sh", "-c", "echo scratch > /tmp/scratch"]).await;
    assert_eq!(tmp.exit_code, 0, "writing to the writable /tmp mount: {}", String::from_utf8_lossy(&tmp.stderr));
    let on_host = std::fs::read_to_string(host_tmp.path().join("scratch")).unwrap_or_default();
    assert_eq!(on_host, "scratch\n", "the write reached the host dir");
    let shm = pods.exec(&container, &["touch", "/dev/shm/segment"]).await;
    assert_eq!(shm.exit_code, 0, "/dev/shm stays writable: {}", String::from_utf8_lossy(&shm.stderr));
}

#[tokio::test]
async fn host_dir_mounts() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let read_only = tempfile::tempdir().expect("create host dir");
    let read_write = tempfile::tempdir().expect("create host dir");
    std::fs::write(read_only.path().join("greeting"), "from the host\n").expect("write host file");
    let mut config = container_config("main", &image("busybox"), &["sleep", "600"]);
    config.mounts = vec![
        Mount {
            container_path: "/ro".to_string(),
            host_path: read_only.path().display().to_string(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/rw".to_string(),
            host_path: read_write.path().display().to_string(),
            ..Default::default()
        },
    ];
    let sandbox = pods.run_pod(pods.pod_config("mounts")).await;
    let container = pods.create_and_start(&sandbox, pods.pod_config("mounts"), config).await;

    let greeting = pods.exec_stdout(&container, &["cat", "/ro/greeting"]).await;
    assert_eq!(greeting, "from the host\n", "host file through the read-only mount");
    let write_ro = pods.exec(&container, &["touch", "/ro/new"]).await;
    assert_ne!(write_ro.exit_code, 0, "writing to the read-only mount succeeded");
    assert!(!read_only.path().join("new").exists(), "no file appeared in the read-only host dir");

    let write_rw = pods.exec(&container, &["sh", "-c", "echo from the container > /rw/reply"]).await;
    assert_eq!(write_rw.exit_code, 0, "writing to the read-write mount: {}", String::from_utf8_lossy(&write_rw.stderr));
    let reply = std::fs::read_to_string(read_write.path().join("reply")).unwrap_or_default();
    assert_eq!(reply, "from the container\n", "the container's file is in the host dir");

    let status = pods.container_status(&container).await;
    let paths: Vec<(&str, bool)> = status
        .mounts
        .iter()
        .map(|mount| (mount.container_path.as_str(), mount.readonly))
        .collect();
    assert_eq!(paths, [("/ro", true), ("/rw", false)], "ContainerStatus reports the requested mounts");
}

#[tokio::test]
async fn tty_output_reaches_log() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut config = container_config(
        "main",
        &image("busybox"),
        &["sh", "-c", "echo tty-line; test -t 1 && echo stdout-is-a-terminal; echo \"TERM=$TERM\"; sleep 600"],
    );
    config.tty = true;
    let sandbox = pods.run_pod(pods.pod_config("tty")).await;
    pods.create_and_start(&sandbox, pods.pod_config("tty"), config).await;

    let log_path = pods.log_dir("tty").join("main.log");
    wait_for_log(&log_path, "TERM=", Duration::from_secs(10)).await;
    let raw = std::fs::read_to_string(&log_path).expect("read the log");
    // A terminal turns each newline into CR LF, so the messages end in CR.
    let messages: Vec<String> = log_messages(&log_path)
        .into_iter()
        .map(|message| message.trim_end_matches('\r').to_string())
        .collect();
    assert_eq!(messages, ["tty-line", "stdout-is-a-terminal", "TERM=xterm"], "TTY output in the log");
    assert!(
        raw.lines().all(|line| line.split(' ').nth(1) == Some("stdout")),
        "a TTY container logs everything as stdout: {raw}"
    );
}

async fn list_container_ids(pods: &PodDaemon, filter: ContainerFilter) -> Vec<String> {
    let containers = pods
        .runtime()
        .await
        .list_containers(ListContainersRequest { filter: Some(filter) })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    containers.into_iter().map(|container| container.id).collect()
}

async fn stream_container_ids(pods: &PodDaemon, filter: ContainerFilter) -> Vec<String> {
    let mut stream = pods
        .runtime()
        .await
        .stream_containers(StreamContainersRequest { filter: Some(filter) })
        .await
        .expect("StreamContainers")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(message) = stream.message().await.expect("StreamContainers message") {
        ids.extend(message.containers.into_iter().map(|container| container.id));
    }
    ids
}

fn labelled(name: &str, tier: &str, command: &[&str]) -> ContainerConfig {
    let mut config = container_config(name, &image("busybox"), command);
    config.labels.insert("tier".to_string(), tier.to_string());
    config
}

fn state_is(state: ContainerState) -> Option<ContainerStateValue> {
    Some(ContainerStateValue { state: state as i32 })
}

#[tokio::test]
async fn list_filters_and_stream() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let first_pod = pods.run_pod(pods.pod_config("one")).await;
    let second_pod = pods.run_pod(pods.pod_config("two")).await;
    let web = pods
        .create_and_start(&first_pod, pods.pod_config("one"), labelled("web", "web", &["sleep", "600"]))
        .await;
    let db = pods.create(&first_pod, pods.pod_config("one"), labelled("db", "db", &["sleep", "600"])).await;
    let other = pods
        .create_and_start(&second_pod, pods.pod_config("two"), labelled("other", "web", &["sh", "-c", "exit 0"]))
        .await;
    pods.wait_exited(&other, EXIT_WAIT).await;

    let all = list_container_ids(&pods, ContainerFilter::default()).await;
    assert_eq!(all, [web.clone(), db.clone(), other.clone()], "unfiltered, oldest first");
    let in_one = list_container_ids(
        &pods,
        ContainerFilter {
            pod_sandbox_id: first_pod.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(in_one, [web.clone(), db.clone()], "filter by pod");
    let by_id = list_container_ids(
        &pods,
        ContainerFilter {
            id: db[..12].to_string(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_id, [db.as_str()], "filter by ID prefix");

    let created = list_container_ids(
        &pods,
        ContainerFilter {
            state: state_is(ContainerState::ContainerCreated),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created, [db.as_str()], "filter by state CREATED");
    let running = list_container_ids(
        &pods,
        ContainerFilter {
            state: state_is(ContainerState::ContainerRunning),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(running, [web.as_str()], "filter by state RUNNING");
    let exited = list_container_ids(
        &pods,
        ContainerFilter {
            state: state_is(ContainerState::ContainerExited),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(exited, [other.as_str()], "filter by state EXITED");

    let tier_web = ContainerFilter {
        label_selector: [("tier".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    let labelled_web = list_container_ids(&pods, tier_web.clone()).await;
    assert_eq!(labelled_web, [web.clone(), other.clone()], "filter by label tier=web");
    let web_in_two = list_container_ids(
        &pods,
        ContainerFilter {
            pod_sandbox_id: second_pod.clone(),
            ..tier_web.clone()
        },
    )
    .await;
    assert_eq!(web_in_two, [other.as_str()], "filter by label and pod");

    let listed = pods
        .runtime()
        .await
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                id: web.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(listed[0].pod_sandbox_id, first_pod, "listed pod_sandbox_id");
    assert_eq!(listed[0].metadata.as_ref().map(|m| m.name.as_str()), Some("web"), "listed metadata");
    assert!(listed[0].image_ref.starts_with("sha256:"), "listed image_ref is an image ID: {:?}", listed[0].image_ref);

    let streamed = stream_container_ids(&pods, ContainerFilter::default()).await;
    assert_eq!(streamed, all, "StreamContainers without filter");
    let streamed_web = stream_container_ids(&pods, tier_web).await;
    assert_eq!(streamed_web, [web.clone(), other.clone()], "StreamContainers filtered by label");
}

#[tokio::test]
async fn status_through_lifecycle() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let sandbox = pods.run_pod(pods.pod_config("lifecycle")).await;
    let mut config = container_config("main", &image("busybox"), &["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]);
    config.labels.insert("tier".to_string(), "web".to_string());
    config.annotations.insert("note".to_string(), "kept".to_string());
    let container = pods.create(&sandbox, pods.pod_config("lifecycle"), config).await;

    let created = pods.container_status(&container).await;
    assert_eq!(created.state, ContainerState::ContainerCreated as i32, "state after create");
    assert!(created.created_at > 0, "created_at is set");
    assert_eq!(created.started_at, 0, "started_at is unset before start");
    assert_eq!(created.finished_at, 0, "finished_at is unset before start");
    assert_eq!(created.metadata.as_ref().map(|m| m.name.as_str()), Some("main"), "metadata");
    assert_eq!(created.labels.get("tier").map(String::as_str), Some("web"), "labels");
    assert_eq!(created.annotations.get("note").map(String::as_str), Some("kept"), "annotations");
    assert_eq!(created.image.as_ref().map(|spec| spec.image.as_str()), Some(image("busybox").as_str()), "image");
    assert!(created.image_ref.starts_with("sha256:"), "image_ref is an image ID: {:?}", created.image_ref);
    let log_path = pods.log_dir("lifecycle").join("main.log");
    assert_eq!(created.log_path, log_path.display().to_string(), "log_path joins the pod's log directory");

    pods.runtime()
        .await
        .start_container(berth_proto::cri::StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .expect("StartContainer");
    let running = pods.container_status(&container).await;
    assert_eq!(running.state, ContainerState::ContainerRunning as i32, "state after start");
    assert!(running.started_at >= running.created_at, "started_at {} before created_at", running.started_at);
    assert_eq!(running.finished_at, 0, "finished_at is unset while running");

    pods.runtime()
        .await
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 10,
        })
        .await
        .expect("StopContainer");
    let exited = pods.container_status(&container).await;
    assert_eq!(exited.state, ContainerState::ContainerExited as i32, "state after stop");
    assert!(exited.finished_at >= exited.started_at, "finished_at {} before started_at", exited.finished_at);
    assert_eq!(exited.exit_code, 0, "the TERM trap exited with 0");
    assert_eq!(exited.reason, "Completed", "reason of exit code 0");
    assert_eq!(exited.started_at, running.started_at, "started_at is kept after the exit");
}

/// Containers stopped at once in [`events_in_order`]. The daemon detects each exit in several
/// tasks, and a race between them shows only under load.
const EVENT_CONTAINERS: usize = 8;

#[tokio::test]
async fn events_in_order() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let mut events = pods
        .runtime()
        .await
        .get_container_events(GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    let sandbox = pods.run_pod(pods.pod_config("events")).await;
    let mut containers = Vec::new();
    for index in 0..EVENT_CONTAINERS {
        let config = container_config(&format!("main-{index}"), &image("busybox"), &["sleep", "600"]);
        containers.push(pods.create_and_start(&sandbox, pods.pod_config("events"), config).await);
    }

    let mut stops = Vec::new();
    for container in &containers {
        let mut client = pods.runtime().await;
        let request = StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        };
        stops.push(tokio::spawn(async move { client.stop_container(request).await }));
    }
    for stop in stops {
        stop.await.expect("StopContainer task").expect("StopContainer");
    }
    let mut client = pods.runtime().await;
    for container in &containers {
        client
            .remove_container(RemoveContainerRequest {
                container_id: container.clone(),
            })
            .await
            .expect("RemoveContainer");
    }

    let mut received: Vec<(String, ContainerEventType, i64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait for the last deletion, then give a late duplicate a moment to arrive.
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        if now > deadline || quiet_until.is_some_and(|until| now > until) {
            break;
        }
        let Ok(message) = tokio::time::timeout(Duration::from_millis(300), events.message()).await else {
            continue;
        };
        let event = message.expect("event stream").expect("event stream ended early");
        let kind = ContainerEventType::try_from(event.container_event_type).expect("known event type");
        if kind == ContainerEventType::ContainerDeletedEvent && containers.last() == Some(&event.container_id) {
            quiet_until = Some(Instant::now() + Duration::from_millis(1500));
        }
        received.push((event.container_id, kind, event.created_at));
    }

    for (index, container) in containers.iter().enumerate() {
        let kinds: Vec<ContainerEventType> = received
            .iter()
            .filter(|(id, _, _)| id == container)
            .map(|(_, kind, _)| *kind)
            .collect();
        assert_eq!(
            kinds,
            [
                ContainerEventType::ContainerCreatedEvent,
                ContainerEventType::ContainerStartedEvent,
                ContainerEventType::ContainerStoppedEvent,
                ContainerEventType::ContainerDeletedEvent,
            ],
            "events of container main-{index}: one of each kind, in order"
        );
    }
    let strangers: Vec<&String> = received
        .iter()
        .map(|(id, _, _)| id)
        .filter(|id| !containers.contains(id))
        .collect();
    assert!(strangers.is_empty(), "events of containers this test did not create: {strangers:?}");
    let times: Vec<i64> = received.iter().map(|(_, _, time)| *time).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "event times do not go back: {times:?}");
}

/// Returns the counter values of `line-N` messages.
fn counters(messages: &[String]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| message.strip_prefix("line-"))
        .map(|number| number.parse().expect("counter is a number"))
        .collect()
}

#[tokio::test]
async fn reopen_log_after_rotation() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods
        .run_busybox("rotate", &["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); usleep 100000; done"])
        .await;
    let log_path = pods.log_dir("rotate").join("main.log");
    let rotated = pods.log_dir("rotate").join("main.log.1");
    wait_for_log(&log_path, "line-5", Duration::from_secs(10)).await;

    std::fs::rename(&log_path, &rotated).expect("rotate the log");
    pods.runtime()
        .await
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: container.clone(),
        })
        .await
        .expect("ReopenContainerLog");
    assert!(log_path.exists(), "ReopenContainerLog created a new file at the original path");

    let fresh = wait_for_log(&log_path, "line-", Duration::from_secs(5)).await;
    let fresh_start = counters(&fresh)[0];
    wait_for_log(&log_path, &format!("line-{}", fresh_start + 5), Duration::from_secs(5)).await;
    let rotated_length = std::fs::metadata(&rotated).expect("rotated log").len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::metadata(&rotated).expect("rotated log").len(),
        rotated_length,
        "the rotated file stopped growing"
    );

    let old = counters(&log_messages(&rotated));
    let new = counters(&log_messages(&log_path));
    assert_eq!(old.first(), Some(&0), "the rotated file starts with line-0");
    let joined: Vec<u64> = old.iter().chain(new.iter()).copied().collect();
    let expected: Vec<u64> = (0..joined.len() as u64).collect();
    assert_eq!(joined, expected, "no line is lost or repeated across the rotation");
}

#[tokio::test]
async fn exec_timeout_kills_command() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods.run_busybox("exectimeout", &["sleep", "600"]).await;

    let started = Instant::now();
    let result = pods
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["sleep".to_string(), "37".to_string()],
            timeout: 1,
        })
        .await;
    let elapsed = started.elapsed();

    let status = result.expect_err("ExecSync of sleep 37 with timeout 1 succeeded");
    assert_eq!(status.code(), Code::DeadlineExceeded, "code of a timed-out exec: {status:?}");
    assert!(elapsed < Duration::from_secs(4), "the timeout took {elapsed:?}");
    let ps = pods.exec_stdout(&container, &["ps", "-o", "pid,stat,args"]).await;
    assert!(!ps.contains("sleep 37"), "the timed-out command still runs: {ps}");
    let zombies: Vec<&str> = ps.lines().skip(1).filter(|line| line.split_whitespace().nth(1) == Some("Z")).collect();
    assert!(zombies.is_empty(), "zombies left in the container: {zombies:?}");
}

#[tokio::test]
async fn exec_output_capped() {
    let pods = PodDaemon::start_with_runtime("exec_sync_max_output_bytes = 1024", "").await;
    let (_, container) = pods.run_busybox("execcap", &["sleep", "600"]).await;

    let output = pods
        .exec(
            &container,
            &[
                "sh",
                "-c",
                "head -c 102400 /dev/zero | tr '\\0' a; head -c 102400 /dev/zero | tr '\\0' b >&2; exit 4",
            ],
        )
        .await;

    assert_eq!(output.exit_code, 4, "exit code of a command whose output was cut");
    assert_eq!(output.stdout.len(), 1024, "stdout is cut at the configured maximum");
    assert!(output.stdout.iter().all(|&byte| byte == b'a'), "stdout holds the first bytes written");
    assert_eq!(output.stderr.len(), 1024, "stderr is cut at the configured maximum");
    assert!(output.stderr.iter().all(|&byte| byte == b'b'), "stderr holds the first bytes written");
    let small = pods.exec_stdout(&container, &["echo", "short"]).await;
    assert_eq!(small, "short\n", "output below the maximum is whole");
}

#[tokio::test]
async fn stop_with_zero_timeout() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods
        .run_busybox("stopzero", &["sh", "-c", "trap 'exit 7' TERM; sleep 600 & wait"])
        .await;

    let started = Instant::now();
    pods.runtime()
        .await
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
    let elapsed = started.elapsed();

    assert!(elapsed < Duration::from_secs(3), "StopContainer with timeout 0 took {elapsed:?}");
    let status = pods.container_status(&container).await;
    assert_eq!(status.state, ContainerState::ContainerExited as i32, "state after the stop");
    assert_eq!(status.exit_code, 137, "timeout 0 kills at once, so the TERM trap never runs");
    assert_eq!(status.reason, "Error", "reason of a killed container");
}

#[tokio::test]
async fn stop_kills_after_timeout() {
    let pods = PodDaemon::start("").await;
    let (_, container) = pods
        .run_busybox("stopignored", &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"])
        .await;

    let started = Instant::now();
    pods.runtime()
        .await
        .stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 2,
        })
        .await
        .expect("StopContainer");
    let elapsed = started.elapsed();

    assert!(elapsed >= Duration::from_secs(2), "SIGKILL came before the 2 s timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "StopContainer took {elapsed:?}");
    let status = pods.container_status(&container).await;
    assert_eq!(status.state, ContainerState::ContainerExited as i32, "state after the stop");
    assert_eq!(status.exit_code, 137, "a container that ignores TERM is killed with SIGKILL");
    assert_eq!(status.reason, "Error", "reason of a killed container");
}

#[tokio::test]
async fn exit_code_and_reason() {
    let pods = PodDaemon::start("").await;
    pull(&pods, "busybox").await;
    let sandbox = pods.run_pod(pods.pod_config("exits")).await;
    let failing = pods
        .create_and_start(&sandbox, pods.pod_config("exits"), container_config("failing", &image("busybox"), &["sh", "-c", "exit 3"]))
        .await;
    let succeeding = pods
        .create_and_start(&sandbox, pods.pod_config("exits"), container_config("succeeding", &image("busybox"), &["sh", "-c", "exit 0"]))
        .await;

    let failed = pods.wait_exited(&failing, EXIT_WAIT).await;
    assert_eq!(failed.exit_code, 3, "exit code");
    assert_eq!(failed.reason, "Error", "reason of a non-zero exit");
    assert!(failed.finished_at >= failed.started_at, "finished_at {} before started_at", failed.finished_at);
    assert!(failed.started_at > 0, "started_at is set");

    let succeeded = pods.wait_exited(&succeeding, EXIT_WAIT).await;
    assert_eq!(succeeded.exit_code, 0, "exit code");
    assert_eq!(succeeded.reason, "Completed", "reason of exit code 0");
    assert!(succeeded.finished_at > 0, "finished_at is set");

    let exec = pods
        .runtime()
        .await
        .exec_sync(ExecSyncRequest {
            container_id: failing.clone(),
            cmd: vec!["true".to_string()],
            timeout: 5,
        })
        .await
        .expect_err("ExecSync in an exited container succeeded");
    assert_eq!(exec.code(), Code::FailedPrecondition, "ExecSync in an exited container: {exec:?}");
    assert!(Path::new(&failed.log_path).exists(), "the log of an exited container remains");
}
