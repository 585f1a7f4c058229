"""Open a `detoxkit guard eval` HTML report in headless Chromium; screenshot -> benchmarks/results/guard_eval_report.png.

Checks what a reader needs from the page: it renders, every image in it loaded (a guard with a judge has its threshold sweep plot), the
per-stage table names every system that was evaluated (metrics.json beside the report), and nothing on the page
failed in the browser's console. Not part of `make test`: it needs a browser (see playground_check.py for set-up).

    python benchmarks/report_check.py runs/bench-guard-bundle [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from playground_check import browser, save_screenshot

ROOT = Path(__file__).resolve().parents[1]


def check(driver, eval_dir: Path) -> dict:
    from selenium.webdriver.common.by import By

    report = eval_dir / "report" / "report.html"
    if not report.is_file():
        raise SystemExit(f"{report}: no report (run detoxkit guard eval first)")
    driver.get(report.resolve().as_uri())
    images = driver.find_elements(By.TAG_NAME, "img")
    broken = [
        i.get_attribute("src") for i in images if not driver.execute_script("return arguments[0].naturalWidth", i)
    ]
    text = driver.find_element(By.TAG_NAME, "body").text
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    systems = sorted({key.split("/", 1)[1] for key in metrics["table"]})
    missing = [s for s in systems if s not in text]
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not broken, f"images that did not load: {broken}"
    assert images or "judge" not in metrics, "no threshold sweep plot, though the guard has a judge"
    assert not missing, f"systems missing from the report: {missing}"
    assert not errors, f"console errors: {errors}"
    return {"images": len(images), "tables": len(driver.find_elements(By.TAG_NAME, "table")), "systems": systems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_dir", help="a guard eval output_dir (report/report.html and metrics.json in it)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "guard_eval_report.png"))
    args = ap.parse_args(argv)
    driver = browser()
    try:
        found = check(driver, Path(args.eval_dir))
        size = save_screenshot(driver, Path(args.out))
    finally:
        driver.quit()
    print(
        f"report check: {found['images']} images loaded, {found['tables']} tables, systems {found['systems']}; "
        f"screenshot {args.out} ({size} bytes)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
