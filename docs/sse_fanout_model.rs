// A model of `bench sse`'s fan-out done by ONE writer (docs/benchmarks.md, session 22): one thread
// writes a 450-byte event to each of N loopback TCP sockets per round (no reader waits on them, so
// no wake-up is paid; every 20 rounds the peers are drained), and reports the writer's CPU (user +
// system, from /proc/thread-self/stat) per write: the kernel's cost of one event to one socket,
// without the per-connection tasks and hyper. Standard library only:
//   rustc -O docs/sse_fanout_model.rs -o /tmp/fanout && (ulimit -n 8192; /tmp/fanout 1100 300)
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = s.rsplit_once(')').unwrap().1;
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).map(|x| x.parse().unwrap()).collect();
    (f[0] + f[1]) as f64 / 100.0
}

fn main() {
    let n: usize = std::env::args().nth(1).map_or(1100, |a| a.parse().unwrap());
    let rounds: usize = std::env::args().nth(2).map_or(200, |a| a.parse().unwrap());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..n {
        let c = TcpStream::connect(addr).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        c.set_nonblocking(true).unwrap();
        clients.push(c);
        servers.push(s);
    }
    let event = vec![b'x'; 450];
    let mut buf = vec![0u8; 1 << 16];
    let mut write_cpu = 0.0;
    let mut drain_cpu = 0.0;
    let t = Instant::now();
    for r in 0..rounds {
        let a = thread_cpu();
        for s in servers.iter_mut() {
            s.write_all(&event).unwrap();
        }
        let b = thread_cpu();
        write_cpu += b - a;
        if r % 20 == 19 {
            for c in clients.iter_mut() {
                loop {
                    match c.read(&mut buf) { Ok(0) => break, Ok(_) => {}, Err(_) => break }
                }
            }
            drain_cpu += thread_cpu() - b;
        }
    }
    let writes = (n * rounds) as f64;
    println!("{n} sockets x {rounds} rounds: writer CPU {:.2} us/write; drain (reader side, batched) {:.2} us/event; wall {:.1} s",
        write_cpu / writes * 1e6, drain_cpu / writes * 1e6, t.elapsed().as_secs_f64());
}
