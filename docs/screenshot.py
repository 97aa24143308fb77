"""Screenshot of a report page in headless Chromium, 1280 px wide, from one section down (README picture).

    python docs/screenshot.py report.html docs/report.png --section synthesis --height 1560

Needs Debian's chromium and chromium-driver, and selenium (the dev extra).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--hide-scrollbars", "--window-size=1280,900")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--section", default="synthesis", help="id of the section the picture starts at")
    parser.add_argument("--height", type=int, default=1560, help="pixels")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get(args.page.resolve().as_uri())
            top = int(driver.execute_script(f"return document.getElementById('{args.section}')"
                                            ".getBoundingClientRect().top + window.scrollY")) - 16
            driver.set_window_size(1280, top + args.height + 200)
            full = Path(profile) / "full.png"
            driver.save_screenshot(str(full))
        finally:
            driver.quit()
        picture = Image.open(full).convert("RGB").crop((0, max(0, top), 1280, top + args.height))
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
