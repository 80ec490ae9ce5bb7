"""Latency of POST /v1/events (one event) through node n1 of a 4-partition cluster: events of
plain customers against events of anonymous ids merged into a known id of another partition
(passed on by the front: one more round trip)."""
import json, time, urllib.request, sys, statistics

BASE = "http://127.0.0.1:18081"
ADMIN = "mbench-admin-token-0123456789"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000

def call(method, path, body=None, key=ADMIN):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + key)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

OFF, P = 0xcbf29ce484222325, 0x100000001b3
def part(c, n=4):
    h = OFF
    for b in b"\x1f" + c.encode():
        h = ((h ^ b) * P) & 0xFFFFFFFFFFFFFFFF
    return h % n

for _ in range(120):
    try:
        if call("GET", "/healthz")[0] == 200:
            break
    except Exception:
        pass
    time.sleep(0.5)
time.sleep(12)  # the placement settles
code, tenant = call("POST", "/v1/admin/tenants", {"name": "mbench"})
assert code == 201, (code, tenant)
key = tenant["api_key"]

pairs = []
i = 0
while len(pairs) < N:
    anon, user = f"anon-{i}", f"user-{i}"
    if part(anon) != part(user):
        pairs.append((anon, user))
    i += 1
for start in range(0, N, 500):
    chunk = pairs[start:start + 500]
    batch = [{"id": f"v-{a}", "customer": a, "name": "page_viewed"} for a, _ in chunk]
    batch += [{"id": f"m-{a}", "customer": u, "name": "alias", "properties": {"previous_id": a}} for a, u in chunk]
    code, body = call("POST", "/v1/events", batch, key)
    assert code == 202, (code, body)
# The merges' first steps run on the anonymous ids' partitions: each anonymous profile is
# carried away (404) once its alias is written there.
deadline = time.time() + 120
for a, _ in pairs[:: max(1, N // 50)] + [pairs[-1]]:
    while call("GET", f"/v1/customers/{a}", None, key)[0] != 404:
        assert time.time() < deadline, f"{a} not merged"
        time.sleep(0.2)

def measure(label, customers, prefix):
    times = []
    for n, c in enumerate(customers):
        t = time.perf_counter()
        code, body = call("POST", "/v1/events", {"id": f"{prefix}-{n}", "customer": c, "name": "page_viewed"}, key)
        times.append(time.perf_counter() - t)
        assert code == 202 and body["accepted"] == 1, (code, body)
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))] * 1000
    print(f"| {label} | {len(times)} | {q(0.5):.2f} ms | {q(0.9):.2f} ms | {q(0.99):.2f} ms |")

print("| one event through n1 | requests | p50 | p90 | p99 |")
print("| --- | ---: | ---: | ---: | ---: |")
for round_ in range(2):
    measure("a plain customer", [f"plain-{round_}-{n}" for n in range(N)], f"p{round_}")
    measure("an anonymous id merged into another partition's", [a for a, _ in pairs], f"a{round_}")
# The passed-on events reached the known ids: their latest events list them.
code, body = call("GET", f"/v1/customers/{pairs[0][1]}/events", None, key)
assert any(e["id"].startswith("a0-") or e["id"].startswith("a1-") for e in body["events"]), body
print("checked: a passed-on event is listed under the known id")
