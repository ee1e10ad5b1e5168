#!/usr/bin/env python3
"""I5 reproduction: a free worker slot + a queued backlog that cannot start.
usage: i5.py BINARY MODE CHECKPOINTS  (MODE: writer | gpu | retry)
writer: WORKER_CONCURRENCY=2, one long writer running, N jobs reading what it writes.
gpu:    WORKER_CONCURRENCY=1 (free slot), N jobs requiring label `gpu` (no node has it).
Prints, per checkpoint: POST /jobs median of the last 100 submits, and the server's CPU over 10 s idle."""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request, statistics

binary, mode = sys.argv[1], sys.argv[2]
checkpoints = [int(x) for x in sys.argv[3].split(",")]
idle_secs = float(os.environ.get("IDLE_SECS", "10"))
tmp = tempfile.mkdtemp(prefix="i5-")
data = os.path.join(tmp, "data"); os.makedirs(os.path.join(data, "in"))
subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "2",
                "-c:v", "libx264", "-g", "10", os.path.join(data, "in/a.mp4")], check=True)
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, DATA_PATH=data, PORT=str(port), DATABASE_URL=os.environ.get("DB", "sqlite://" + os.path.join(tmp, "jobs.db")),
           WORKER_CONCURRENCY="2" if mode == "writer" else "1", RUST_LOG="warn", LOG_FORMAT="json")
server = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.log"), "w"))
U = f"http://127.0.0.1:{port}"
print("SERVER", server.pid, flush=True)
def post(body):
    r = urllib.request.Request(U + "/jobs", data=json.dumps(body).encode(), method="POST",
                               headers={"content-type": "application/json"})
    t = time.perf_counter(); out = json.loads(urllib.request.urlopen(r).read()); return time.perf_counter() - t, out
def get(path):
    return json.loads(urllib.request.urlopen(U + path).read())
def cpu():
    f = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
try:
    for _ in range(200):
        try: get("/health"); break
        except Exception: time.sleep(0.1)
    if mode == "writer":
        _, w = post({"command": "-re -stream_loop -1 -i in/a.mp4 -t 3600 -c copy w/big.mp4"})
        for _ in range(200):
            if get("/jobs/" + w["id"])["status"] == "running": break
            time.sleep(0.1)
    n = 0; lat = []
    for cp in checkpoints:
        while n < cp:
            if mode == "writer": body = {"command": f"-i w/big.mp4 -t 1 r/o{n}.mp4"}
            else: body = {"command": f"-i in/a.mp4 -t 1 g/o{n}.mp4", "requires": ["gpu"]}
            t, j = post(body); lat.append(t); n += 1
            assert j["status"] == "queued", j
        time.sleep(1)
        c0 = cpu(); time.sleep(idle_secs); c1 = cpu()
        last = lat[-100:]
        print(f"{mode} queued={cp} post_median_ms={statistics.median(last)*1000:.2f} "
              f"post_p90_ms={sorted(last)[int(len(last)*0.9)]*1000:.2f} idle_cpu_pct={(c1-c0)/idle_secs*100:.2f}", flush=True)
    if os.environ.get("HOLD"):
        print("PID", server.pid, flush=True); time.sleep(float(os.environ["HOLD"]))
finally:
    server.terminate(); server.wait()
