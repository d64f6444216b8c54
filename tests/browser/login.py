"""The login and consent pages in a real browser: headless Chromium driven through its
WebDriver (Debian's chromium and chromium-driver) by Selenium; run by
tests/browser_login.rs.

Usage: login.py CONFIG_JSON
CONFIG_JSON: {"authorize_url", "redirect_uri", "user", "password", "wrong_password",
              "screenshot", "chromium", "chromedriver"}

Signs in with a wrong password (the page must say so), then the right one, approves on
the consent page and waits to land on the redirect URI. Prints one JSON object with what
the browser saw; the Rust test asserts.
"""

import json
import sys
import tempfile

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as missing:
    sys.stderr.write(f"missing Python package: {missing}. Run scripts/test, which provisions it.\n")
    sys.exit(3)

CONFIG = json.loads(sys.argv[1])


def sign_in(driver, password):
    WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(CONFIG["user"])
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[value=login]").click()


def main():
    report = {}
    options = webdriver.ChromeOptions()
    options.binary_location = CONFIG["chromium"]
    profile = tempfile.mkdtemp(prefix="tower-secure-chromium-")
    # The closed network: no background connections, no component updates, no QUIC.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=520,640", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CONFIG["chromedriver"]), options=options)
    try:
        driver.set_page_load_timeout(15)
        driver.get(CONFIG["authorize_url"])
        WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.ID, "username")))
        report["login_title"] = driver.title
        labels = driver.find_elements(By.CSS_SELECTOR, "label")
        report["labels"] = {label.get_attribute("for"): label.text for label in labels}
        driver.save_screenshot(CONFIG["screenshot"])

        sign_in(driver, CONFIG["wrong_password"])
        WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
        report["error_text"] = driver.find_element(By.CSS_SELECTOR, "[role=alert]").text

        sign_in(driver, CONFIG["password"])
        WebDriverWait(driver, 10).until(ready.presence_of_element_located((By.CSS_SELECTOR, "button[value=approve]")))
        report["consent_title"] = driver.title
        report["consent_scopes"] = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "li code")]
        driver.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(CONFIG["redirect_uri"]))
        report["final_url"] = driver.current_url
    finally:
        driver.quit()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
