//! No livelock, no spin (DESIGN §5): one guest serving 1,000 busy
//! connections from one queue keeps serving all of them, and a guest idle
//! on its queue with 1,000 registered sockets uses no CPU.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{GUEST_DEADLINE, cpu_time, spawn_guest, wait_for_line};

#[test]
fn one_guest_serves_1000_busy_connections() {
    let toml =
        std::fs::read_to_string(crate::common::root().join("examples/policies/event-echo.toml"))
            .unwrap();
    let out = spawn_guest("rust-event-echo", "busy-guest", &toml, &["127.0.0.1:0"]);
    let line = wait_for_line(&out, "event-echo: listening on ");
    let addr: std::net::SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();

    const CONNECTIONS: usize = 1000;
    const ROUNDS: usize = 20;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let served = runtime.block_on(async move {
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..CONNECTIONS {
            clients.spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(addr).await?;
                let message = [(i % 251) as u8; 64];
                let mut back = [0u8; 64];
                for _ in 0..ROUNDS {
                    conn.write_all(&message).await?;
                    conn.read_exact(&mut back).await?;
                    assert_eq!(back, message);
                }
                std::io::Result::Ok(())
            });
        }
        tokio::time::timeout(GUEST_DEADLINE, async {
            let mut served = 0;
            while let Some(result) = clients.join_next().await {
                result.unwrap().unwrap();
                served += 1;
            }
            served
        })
        .await
        .expect("every connection was served within the deadline")
    });
    assert_eq!(served, CONNECTIONS);
}

#[test]
fn an_idle_guest_with_1000_registered_sockets_uses_no_cpu() {
    let mut script = vec!["queue 16"];
    script.extend(std::iter::repeat_n("udp-many 100 q0", 10));
    // Also a stream whose FD_READ was posted and whose data waits unread,
    // with FD_CLOSE registered: nothing is due until the guest reads.
    script.extend([
        "socket 2 1 6",
        "bind s1000 127.0.0.1:0",
        "listen s1000 1",
        "socket 2 1 6",
        "connect s1001 @s1000",
        "accept s1000",
        "select s1002 q0 2 read close",
        "send s1001 unread",
        "get q0 10000",
    ]);
    // The last wait keeps the guest's threads alive while they are measured.
    script.extend(["echo idle", "get q0 2000", "echo done", "get q0 60000"]);
    let toml = format!(
        "{}\n[limits]\nmax-sockets = 2048\n",
        crate::common::LOOPBACK
    );
    let out = spawn_guest("probe", "idle-guest", &toml, &script);
    wait_for_line(&out, "ok idle");
    let before = cpu_time("idle-guest");
    let idle_started = Instant::now();
    let done = wait_for_line(&out, "ok done");
    let idle = idle_started.elapsed();
    let used = cpu_time("idle-guest").saturating_sub(before);
    let text = String::from_utf8_lossy(&out.contents()).into_owned();
    assert!(
        text.contains("\nok 1000\n"),
        "1,000 sockets registered: {text}"
    );
    assert!(text.contains("ok msg=2 s=s1002 event=read"), "{text}");
    assert!(
        text.contains("ok none"),
        "nothing was posted while idle: {text}"
    );
    assert_eq!(done, "ok done");
    // A spinning engine would use a whole core for the idle period.
    assert!(
        used < idle / 4,
        "used {used:?} of CPU while idle for {idle:?}"
    );
}
