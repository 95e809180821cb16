"""Regenerate the studio's screenshots in docs/images/studio-*.png (linked from docs/studio.md).

    .venv/bin/python scripts/studio_screenshots.py [--runs DIR] [--recipe lora-small]

Starts `pipeline studio` over DIR (default: a temporary folder with two synthetic run folders; give a folder
with real finished runs for the chat and compare pages to show answers), opens every page in Debian's chromium
(`make browser-env`) and saves each as a 256-colour PNG (small files in git).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from live_server import free_port  # noqa: E402
from studio_runs import write_run  # noqa: E402

IMAGES = ROOT / "docs" / "images"
CHROMIUM = os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium")


def shrink(path: Path) -> None:
    """Re-save a screenshot with a 256-colour palette (a fraction of the size, text stays sharp)."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)


def main() -> None:
    """Start a studio, visit each page, save the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", help="Folder of run folders (default: two synthetic runs).")
    parser.add_argument("--recipe", default="lora-small", help="Recipe the recipe and data pages show.")
    args = parser.parse_args()
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp()) / "runs"
    if not args.runs:
        write_run(runs, "lora-small-20261201-000000", [2.0 - k * 0.02 for k in range(40)])
        write_run(
            runs, "lora-small-20261202-000000", [2.0 - k * 0.03 for k in range(40)], {"adapter": {"r": 8}}
        )
    folders = sorted(
        (p for p in runs.iterdir() if (p / "recipe.yaml").is_file()), key=lambda p: p.stat().st_mtime
    )
    first, second = folders[-1].name, folders[-2].name
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "studio", "--port", str(port), "--runs", str(runs)]
    )
    while True:
        try:
            httpx.get(f"{url}/login")
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    from playwright.sync_api import sync_playwright

    shots = {
        "recipes": "/recipes",
        "recipe": f"/recipes/edit?recipe={args.recipe}",
        "data": f"/data?recipe={args.recipe}",
        "train": "/train",
        "runs": "/runs",
        "run": f"/runs/{first}",
        "preference": f"/runs/{first}/preference",
        "compare": f"/compare?run={first}&run={second}",
        "chat": "/chat",
        "ship": f"/runs/{first}/ship",
    }
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for name, path in shots.items():
                page.goto(url + path)
                if name == "recipe":
                    page.fill('[data-key="train.learning_rate"]', "-1")
                    page.locator("#errors li").first.wait_for()
                if name == "chat" and page.locator("#target-right option").count():
                    page.fill("#prompt", "What does `json.dumps` do?")
                    page.click("#send")
                    page.locator("#stats-right", has_text="tokens/s").wait_for(timeout=180_000)
                page.wait_for_timeout(3000)  # charts draw once the replayed events are in
                target = IMAGES / f"studio-{name}.png"
                page.screenshot(path=str(target))
                shrink(target)
                print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KiB")
            browser.close()
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
