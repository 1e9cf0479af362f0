"""The MFA settings (user menu → Security): enrol from the QR code's secret, confirm with a
code, the ten recovery codes shown once and copied, then turn MFA off with a code."""

from __future__ import annotations

import re
import time

import httpx
import pyotp
from playwright.async_api import expect

from tests.support import Account
from tests.ui.conftest import Browsers


async def test_enrol_confirm_copy_the_recovery_codes_and_disable(
    api: httpx.AsyncClient, people: Browsers, owner: Account
) -> None:
    page = await people.signed_in(owner)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.get_by_test_id("mfa-settings-open").click()
    settings = page.get_by_test_id("mfa-settings")
    await expect(settings).to_be_visible()
    await expect(settings.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "false")

    await settings.get_by_test_id("mfa-enrol").click()
    qr = settings.get_by_test_id("mfa-qr")
    await expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml;base64,"))
    # The CSP (img-src data:) lets the SVG load: it has a size.
    width = await qr.evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert width > 0
    secret = (await settings.get_by_test_id("mfa-secret").inner_text()).strip()
    assert re.fullmatch(r"[A-Z2-7]+=*", secret), secret
    totp = pyotp.TOTP(secret)

    code = settings.get_by_test_id("mfa-code")
    await code.fill("000000")
    await settings.get_by_test_id("mfa-confirm").click()
    await expect(settings.get_by_test_id("mfa-error")).to_have_text("That code is not valid.")
    await code.fill(totp.now())
    await settings.get_by_test_id("mfa-confirm").click()
    codes_list = settings.get_by_test_id("mfa-recovery-codes")
    await expect(codes_list.locator("li")).to_have_count(10)
    codes = [c.strip() for c in await codes_list.locator("li").all_inner_texts()]
    assert all(re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", c) for c in codes), codes
    await settings.get_by_test_id("mfa-copy").click()
    copied = await page.evaluate("() => navigator.clipboard.readText()")
    assert copied.split("\n") == codes

    status = await api.get("/api/v1/auth/mfa", headers=owner.headers)
    assert status.json()["enabled"] is True, status.text
    await settings.get_by_test_id("mfa-done").click()
    await expect(settings.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "true")
    await expect(settings.get_by_test_id("mfa-status")).to_contain_text("10 of 10")
    await settings.get_by_test_id("mfa-close").click()
    await expect(settings).to_have_count(0)

    # Reopened: on, and turned off with the next step's code (each step is accepted once).
    await page.get_by_test_id("mfa-settings-open").click()
    await expect(settings.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "true")
    await settings.get_by_test_id("mfa-code").fill(totp.at(time.time() + 30))
    await settings.get_by_test_id("mfa-disable").click()
    await expect(settings.get_by_test_id("mfa-status")).to_have_attribute("data-enabled", "false")
    status = await api.get("/api/v1/auth/mfa", headers=owner.headers)
    assert status.json()["enabled"] is False, status.text
