"""`morl report`: the site's files and tables (against `morl leaderboard`'s aggregation), its atomic replacement,
and the pages opened in headless Chromium from the OS (no console errors, every table and plot rendered).

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending in a
NUL byte on file descriptors 3 and 4), so the test needs no driver package and no network port. The runs are
toy agents of ``test_runs.py`` on Deep Sea Treasure with tiny budgets.
"""

from __future__ import annotations

import base64
import fcntl
import html
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import test_runs  # noqa: F401  (registers toy-hillclimb and toy-random)

from morl import runs as R
from morl.cli import main
from morl.leaderboard import cell_text, leaderboard_from_store, render_markdown
from morl.report import collect, figures, render_site, write_site

DST = "deep-sea-treasure-v0"
CHROMIUM = next(
    (
        p
        for p in (
            os.environ.get("CHROMIUM"),
            shutil.which("chromium"),
            shutil.which("chromium-browser"),
            shutil.which("google-chrome"),
        )
        if p
    ),
    None,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """3 seeds of toy-hillclimb (vmapped) and 2 of toy-random on DST, evaluated a few times during training."""
    d = tmp_path_factory.mktemp("report_runs")
    assert (
        main(
            [
                "train",
                "toy-hillclimb",
                "--env",
                DST,
                "--seeds",
                "0-2",
                "--steps",
                "3200",
                "--num-policies",
                "3",
                "--eval-every",
                "800",
                "--runs-dir",
                str(d),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "toy-random",
                "--env",
                DST,
                "--seeds",
                "0,1",
                "--steps",
                "1000",
                "--eval-every",
                "250",
                "--runs-dir",
                str(d),
                "--quiet",
            ]
        )
        == 0
    )
    return d


@pytest.fixture(scope="module")
def site(trained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "site"
    assert main(["report", "--runs-dir", str(trained), "--out", str(out)]) == 0
    return out


def test_site_has_every_page_and_bundles_plotly_once(site, trained):
    runs = [r for r in R.list_runs(trained)[0] if r.status == "done"]
    assert len(runs) == 5
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert pages == sorted(["index.html", f"envs/{DST}.html"] + [f"runs/{r.id}.html" for r in runs])
    from plotly.offline import get_plotlyjs

    assert (site / "plotly.min.js").read_text() == get_plotlyjs()
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text, page  # no network
        assert "Plotly.newPlot" not in text or '<script src="../plotly.min.js">' in text, page
        assert text.count("plotly.min.js") <= 1 and "cdn" not in text.lower()
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_tables_are_the_leaderboards_aggregation(site, trained):
    """Every cell of the report is the text `morl leaderboard` prints for the same (agent, column)."""
    index = (site / "index.html").read_text()
    store = R.store_for(trained)
    for metric in ("hv", "eu", "sp"):
        lb = leaderboard_from_store(store, metric)
        md = render_markdown(lb)
        assert f'id="board-{metric}"' in index
        for (_agent, c), cell in lb.cells.items():
            text = cell_text(cell, c)
            assert text in md and f">{html.escape(text)}</td>" in index
            assert f'data-sort="{cell.mean!r}"' in index
    assert index.count("<table class=sortable>") == 6 + 1 + 1 + 1  # six metrics, protocols, envs, runs
    env_page = (site / "envs" / f"{DST}.html").read_text()
    assert "front-0" in env_page and "curves-0" in env_page and "true front" in env_page


def test_report_of_a_suite_filters_its_runs_and_rewrites_atomically(trained, tmp_path, capsys):
    out = tmp_path / "rep"
    data = collect(trained)
    assert {a for a in data.agents} == {"toy-hillclimb", "toy-random"}
    assert main(["report", "--runs-dir", str(trained), "--suite", "nope", "--out", str(out)]) == 2
    assert "no finished runs of suite 'nope'" in capsys.readouterr().err
    assert not out.exists()
    write_site({"index.html": "an earlier report", "stale.html": "x", ".morl-report": ""}, out)
    write_site(render_site(data), out)  # a report replaces an earlier report as a whole
    assert (
        not (out / "stale.html").exists() and "<table" in (out / "index.html").read_text() and (out / "runs").is_dir()
    )
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(TypeError):  # a write that fails half-way leaves the earlier report whole, and no temporary
        write_site({"index.html": "new", "runs/broken.html": None, ".morl-report": ""}, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and "<table" in (out / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not a morl report"):
        write_site(render_site(data), other)
    assert (other / "notes.txt").read_text() == "keep" and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_front_figure_views_and_curve_bands():
    rng = np.random.default_rng(0)
    fronts = {"a": [("s0", rng.random((4, 2))), ("s1", rng.random((3, 2)))], "b": [("s0", rng.random((2, 2)))]}
    fig = figures.front_figure(fronts, ["x", "y"], true_front=rng.random((5, 2)))
    assert [t.type for t in fig.data] == ["scatter"] * 4 and fig.data[0].name == "true front"
    assert [t.showlegend for t in fig.data[1:]] == [True, False, True]  # one legend entry per agent
    fig3 = figures.front_figure({"a": [("s0", rng.random((4, 3)))]}, ["x", "y", "z"], true_front=rng.random((5, 3)))
    assert [t.type for t in fig3.data] == ["scatter3d", "scatter3d"]
    fig5 = figures.front_figure(
        {"a": [("s0", rng.random((4, 5)))], "b": [("s0", rng.random((2, 5)))]},
        list("abcde"),
        true_front=rng.random((3, 5)),
    )
    assert [t.type for t in fig5.data] == ["parcoords"] and len(fig5.data[0].dimensions) == 5
    assert list(fig5.data[0].line.color) == [0] * 3 + [1] * 4 + [2] * 2  # true front, a, b
    x, mean, lo, hi = figures.band(
        [np.array([0.0, 10, 20]), np.array([0.0, 5, 20, 30])], [np.array([0.0, 1, 2]), np.array([2.0, 2, 2, 9])]
    )
    assert x.tolist() == [0, 5, 10, 20, 30]  # every seed's x; past 20 only the second seed has data
    assert mean.tolist() == [1.0, 1.25, 1.5, 2.0, 9.0] and lo.tolist() == [0, 0.5, 1, 2, 9]
    assert hi.tolist() == [2, 2, 2, 2, 9]
    rows = [
        [{"env_steps": 0, "wall_time": 1.0, "eval/hypervolume": 1.0}, {"env_steps": 5, "wall_time": 2.0}],
        [{"env_steps": 0, "wall_time": 1.5, "eval/hypervolume": 3.0, "eval/expected_utility": 0.5}],
    ]
    fig = figures.curves_figure({"a": rows})
    assert len(fig.layout.annotations) == 4  # HV and EU panels, over env steps and over wall time
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2 and all(t.mode == "lines" for t in bands)  # HV over steps and wall time (EU: one seed)
    assert figures.curves_figure({"a": [[{"env_steps": 1, "wall_time": 1.0}]]}) is None


def test_import_morl_cli_stays_free_of_plotly_and_jax():
    code = "import sys, morl.cli; print([m for m in ('plotly', 'jax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------ the browser
def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor above 4, so that mapping it onto 3 or 4 in the child cannot clobber it."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe: one page, its console errors collected."""

    FLAGS = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-pipe",
        "--window-size=1280,900",
    ]

    def __init__(self, binary: str, profile: Path):
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()
        to_child, from_child = _above_4(to_child), _above_4(from_child)
        # bash maps the pipe ends onto fds 3 and 4 (a preexec_fn would fork a process that runs JAX threads)
        script = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_child, from_child),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child)
        os.close(from_child)
        self._buf, self._id, self.events, self.session = b"", 0, [], None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, timeout: float = 60.0, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(ev.get("method") == method for ev in self.events):
            self.events.append(self._read(max(deadline - time.monotonic(), 0.01)))

    def eval(self, expression: str):
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(out["exceptionDetails"])
        return out["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and error log entries (e.g. a file that failed to load)."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev.get("method") == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif ev.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif ev.get("method") == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, path: Path, selector: str | None = None) -> Path:
        params = {"format": "png", "captureBeyondViewport": True}
        if selector:
            box = self.eval(
                f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()"
            )
            params["clip"] = dict(zip(("x", "y", "width", "height"), box), scale=1)
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


#: plots that finished drawing (plotly marks the div ``js-plotly-plot`` and draws one SVG group per trace, or WebGL
#: canvases for 3-D scatters and parallel coordinates), and tables with rows
RENDERED = """(async () => {
  const all = () => [...document.querySelectorAll('.plotly-graph-div')];
  for (let i = 0; i < 100 && !all().every(d => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg'));
       i++) await new Promise(r => setTimeout(r, 100));
  const drawn = d => d.classList.contains('js-plotly-plot')
    && (d.querySelector('.main-svg .trace') || d.querySelector('.gl-container canvas'));
  return {plots: all().length,
          drawn: all().filter(drawn).length,
          points: document.querySelectorAll('.plotly-graph-div .scatterlayer .point').length,
          tables: document.querySelectorAll('table').length,
          filled: [...document.querySelectorAll('table')].filter(t => t.querySelector('tbody tr td')).length};
})()"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        reason = "no Chromium installed (Debian: apt-get install chromium); the browser test of the report is skipped"
        print(reason)
        pytest.skip(reason)
    b = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the browser test leaves its screenshots: $MORL_REPORT_SHOTS, else a temporary folder (printed)."""
    return Path(os.environ.get("MORL_REPORT_SHOTS") or tmp_path_factory.mktemp("report-screenshots"))


def test_pages_render_in_chromium_without_errors(site, browser, shots):
    SHOTS, taken = shots, {}
    for page, min_plots, min_tables in (("index.html", 0, 9), (f"envs/{DST}.html", 2, 2), (None, 2, 5)):
        path = site / page if page else sorted((site / "runs").glob("toy-hillclimb*.html"))[0]
        browser.open(path.as_uri())
        state = browser.eval(RENDERED)
        assert browser.errors() == [], (path, browser.errors())
        assert state["plots"] >= min_plots and state["drawn"] == state["plots"], (path, state)
        assert state["tables"] >= min_tables and state["filled"] == state["tables"], (path, state)
        if state["plots"]:
            assert state["points"] > 0, (path, state)  # the fronts' markers are in the SVG
        taken[path.name] = browser.screenshot(SHOTS / f"{path.stem}.png")
    browser.open((site / "index.html").as_uri())  # sorting: clicking the mean-rank header orders the rows by it
    ranks = browser.eval("""(() => { const t = document.querySelector('table.sortable');
        const h = t.querySelectorAll('thead th'); h[h.length - 1].click(); h[h.length - 1].click();
        return [...t.tBodies[0].rows].map(r => Number(r.cells[r.cells.length - 1].dataset.sort)); })()""")
    assert ranks == sorted(ranks, reverse=True) and len(ranks) == 2
    browser.open((site / "envs" / f"{DST}.html").as_uri())
    browser.eval(RENDERED)
    shot = browser.screenshot(SHOTS / "dst-front.png", selector="#front-0")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert all(p.stat().st_size > 10_000 for p in taken.values())
    print(f"screenshots in {SHOTS}: {', '.join(sorted(p.name for p in SHOTS.glob('*.png')))}")


def test_3d_fronts_and_parallel_coordinates_render_in_chromium(browser, tmp_path, shots):
    """The WebGL views (3 objectives: a 3-D scatter; more: parallel coordinates) draw without errors."""
    from plotly.offline import get_plotlyjs

    from morl.report import site as pages

    rng = np.random.default_rng(0)
    f3 = figures.front_figure({"a": [("s0", rng.random((6, 3)))]}, ["x", "y", "z"], true_front=rng.random((8, 3)))
    f5 = figures.front_figure(
        {"a": [("s0", rng.random((6, 5)))], "b": [("s0", rng.random((3, 5)))]},
        list("vwxyz"),
        true_front=rng.random((8, 5)),
    )
    body = pages._plot(f3, "front-3d") + pages._plot(f5, "front-5d")
    files = {
        "index.html": pages._page("fronts", body, 0, plots=True),
        "report.css": pages.CSS,
        "report.js": pages.JS,
        "plotly.min.js": get_plotlyjs(),
    }
    out = write_site(files, tmp_path / "gl")
    browser.open((out / "index.html").as_uri())
    state = browser.eval(RENDERED)
    assert browser.errors() == [] and state["plots"] == state["drawn"] == 2, state
    assert browser.eval("document.querySelectorAll('#front-5d .gl-container canvas').length") >= 1
    browser.screenshot(shots / "fronts-3d-5d.png")
