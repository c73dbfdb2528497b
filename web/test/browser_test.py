#!/usr/bin/env python3
"""The page in headless Chromium, checked: web/index.html?test=1 on the browser's WebGPU adapter.

Serves the repository root over HTTP, drives Debian's chromium through chromedriver (WebDriver's JSON
protocol, Python's standard library only), waits for the page's self-test (web/app.js `selfTest`) and
checks what it left in window.wgtrainTest:

  - every op against the CPU reference compiled to wasm within its bound (src/tools/opcheck.rs);
  - gradcheck of the study's 8 models passes (unless --no-gradcheck);
  - STEPS steps of MODEL on WebGPU and on the wasm CPU: their first 20 losses within 1e-3 (relative) of
    the native CPU backend's (`wgtrain train --backend cpu`, same model, seed, batch and data);
  - the drawn digit got a prediction, and no error line was shown.

Prints one line per check (PASS/FAIL), the figures (images/s, load-to-first-step), and saves a
screenshot of the page after training. Exit status 1 if any check failed, 2 if the browser could not
be driven at all.

  python3 web/test/browser_test.py --screenshot shot.png [--model cnn3-bn --steps 50]
"""

import argparse
import base64
import csv
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STUDY = ["fc8", "fc8-bn", "cnn3", "cnn3-bn", "cnn5", "cnn5-bn", "cnn7", "cnn7-bn"]
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--disable-dev-shm-usage",
    "--window-size=1100,1500",
]


# A browser without WebGPU: navigator.gpu is gone.
NO_WEBGPU_FLAGS = [f for f in CHROME_FLAGS if "webgpu" not in f and "Vulkan" not in f] + [
    "--disable-blink-features=WebGPU"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root):
    handler = functools.partial(QuietHandler, directory=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def webdriver(port, method, path, body=None, timeout=60):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)["value"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"webdriver {method} {path}: {e.read().decode()[:300]}") from None


def native_losses(wgtrain, model, steps, batch, seed, optim, lr):
    out = tempfile.mkdtemp(prefix="wgtrain-native-")
    try:
        subprocess.run(
            [wgtrain, "train", "--backend", "cpu", "--model", model, "--steps", str(steps),
             "--batch", str(batch), "--seed", str(seed), "--optim", optim, "--lr", str(lr),
             "--log-every", "1", "--out", out, "-q"],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "losses.csv")) as f:
            return [float(r["loss"]) for r in csv.DictReader(f)]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="cnn3-bn")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=110)
    ap.add_argument("--no-gradcheck", action="store_true")
    ap.add_argument("--no-webgpu", action="store_true",
                    help="a browser without WebGPU: the page must say so in one line and train on the CPU")
    ap.add_argument("--no-ops", action="store_true", help="skip the op check (to time load-to-first-step)")
    ap.add_argument("--no-training", action="store_true", help="ops and gradcheck only")
    ap.add_argument("--kernels", default="auto", help="the page's kernel set: auto, tiled or emulated")
    ap.add_argument("--screenshot", default=None, help="PNG of the page after the runs")
    ap.add_argument("--json", default=None, help="write window.wgtrainTest here")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds to wait for the page")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    ap.add_argument("--wgtrain", default=os.path.join(ROOT, "target", "release", "wgtrain"))
    args = ap.parse_args()

    if not os.path.exists(os.path.join(ROOT, "web", "pkg", "wgtrain_web_bg.wasm")):
        print("browser test: web/pkg is not built: run web/build.sh first", file=sys.stderr)
        return 2
    httpd = serve(ROOT)
    dport = free_port()
    driver = subprocess.Popen([args.chromedriver, f"--port={dport}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = None
    try:
        for _ in range(100):
            try:
                webdriver(dport, "GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError, RuntimeError):
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": args.chromium, "args": NO_WEBGPU_FLAGS if args.no_webgpu else CHROME_FLAGS},
        }}}
        session = webdriver(dport, "POST", "/session", caps, timeout=120)["sessionId"]
        query = f"test=1&model={args.model}&steps={args.steps}&batch={args.batch}&kernels={args.kernels}"
        if args.no_gradcheck:
            query += "&gradcheck=0"
        if args.no_training:
            query += "&train=0"
        if args.no_ops:
            query += "&ops=0"
        url = f"http://127.0.0.1:{httpd.server_address[1]}/web/index.html?{query}"
        started = time.time()
        webdriver(dport, "POST", f"/session/{session}/url", {"url": url}, timeout=120)
        result, last = None, ""
        while time.time() - started < args.timeout:
            state = webdriver(dport, "POST", f"/session/{session}/execute/sync", {
                "script": "const t = window.wgtrainTest; return [t && t.done ? JSON.stringify(t) : null,"
                          " document.getElementById('status').textContent];",
                "args": []})
            if state[0]:
                result = json.loads(state[0])
                break
            if state[1] != last:
                last = state[1]
                print(f"  [{time.time() - started:5.0f} s] {last}", flush=True)
            time.sleep(1)
        if args.screenshot:
            png = base64.b64decode(webdriver(dport, "GET", f"/session/{session}/screenshot"))
            with open(args.screenshot, "wb") as f:
                f.write(png)
            print(f"browser test: screenshot {args.screenshot}")
    except Exception as e:  # noqa: BLE001 - any failure to drive the browser is one line
        print(f"browser test: could not drive chromium: {e}", file=sys.stderr)
        return 2
    finally:
        if session:
            try:
                webdriver(dport, "DELETE", f"/session/{session}")
            except Exception:  # noqa: BLE001
                pass
        driver.terminate()
        httpd.shutdown()

    if result is None:
        print(f"browser test: FAIL: the page did not finish in {args.timeout} s (last status: {last})")
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return report(result, args)


def report(t, args):
    failures = 0

    def check(ok, line):
        nonlocal failures
        failures += 0 if ok else 1
        print(f"browser test: {'PASS' if ok else 'FAIL'}: {line}")

    print(f"browser test: adapter {t.get('adapter')}")
    errors = t["errors"]
    if args.no_webgpu:
        check(len(errors) == 1 and "no WebGPU" in errors[0] and "\n" not in errors[0],
              f"without WebGPU the page shows one error line: {errors}")
    else:
        check(not errors, "no error line on the page" + (f" (got: {errors})" if errors else ""))
    if not (args.no_webgpu or args.no_ops):
        ops = t.get("ops") or []
        bad = [o for o in ops if not o["pass"]]
        worst = max(ops, key=lambda o: o["rel_err"] / o["tol"] if o["tol"] else o["rel_err"]) if ops else None
        check(ops and not bad, f"ops against the wasm CPU: {len(ops) - len(bad)}/{len(ops)} within bounds"
              + (f"; failed: {', '.join(o['op'] for o in bad)}" if bad else "")
              + (f"; nearest its bound: {worst['op']} {worst['rel_err']:.2e} (bound {worst['tol']:.0e})"
                 if worst else ""))
    if not (args.no_webgpu or args.no_gradcheck):
        reports = t.get("gradcheck") or []
        for name in STUDY:
            r = next((r for r in reports if r["model"] == name), None)
            if r is None:
                check(False, f"gradcheck {name}: no report")
                continue
            worst = max(r["tensors"], key=lambda x: x["rel_err"])
            check(r["pass"], f"gradcheck {name}: loss rel {r['loss_rel_err']:.2e}, worst {worst['what']} "
                  f"{worst['name']} {worst['rel_err']:.2e} (bound {r['tolerance']['tensor']:.0e})")
    bad_model = t.get("bad_model", "")
    check(bad_model.startswith("pasted model: layer 1 (dense") and "\n" not in bad_model,
          f"a bad model file is refused in one line: {bad_model}")
    if args.no_training:
        return verdict(failures)
    s = t.get("settings") or {}
    native = native_losses(args.wgtrain, args.model, args.steps, args.batch, s.get("seed", 1),
                           s.get("optim", "adam"), s.get("lr", 0.001))
    for side in ["cpu"] if args.no_webgpu else ["gpu", "cpu"]:
        run = t.get(side)
        what = "WebGPU" if side == "gpu" else "wasm CPU"
        if not run:
            check(False, f"{what}: the run did not finish")
            continue
        losses = run["losses"]
        n = min(20, len(native))
        rel = [abs(a - b) / abs(b) for a, b in zip(losses[:n], native[:n])]
        check(len(losses) == args.steps and len(rel) == 20 and max(rel) <= 1e-3,
              f"{what} {args.model}: {len(losses)} steps; first 20 losses against the native CPU's, "
              f"worst relative difference {max(rel) if rel else float('nan'):.2e} (bound 1e-3)")
        r = run["result"]
        print(f"browser test: {what} {args.model}: {r['images_per_s']:.1f} images/s, "
              f"validation {100 * r['val_acc']:.2f}%, test {100 * r['test_acc']:.2f}%, "
              f"first log point {r['first_log_ms']:.0f} ms after the run was made")
    check(bool(t.get("guess")) and "%" in t.get("guess", ""), f"the drawn digit's guess: {t.get('guess')}")
    tm = t.get("timings", {})
    print("browser test: page timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in tm.items() if k != "start"))
    return verdict(failures)


def verdict(failures):
    print(f"browser test: {'PASS' if failures == 0 else 'FAIL'} ({failures} failed)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
