"""Signing up, staying signed in across a reload through the cookie alone, signing out."""

from __future__ import annotations

import re

import httpx
import pyotp
from playwright.async_api import expect

from tests.support import register, unique_email
from tests.ui.conftest import Browsers


async def test_sign_up_create_a_project_reload_and_sign_out(
    api: httpx.AsyncClient, people: Browsers
) -> None:
    page = await people.page()
    await page.goto("/")
    await page.get_by_test_id("register-link").click()
    email = unique_email("new")
    await page.get_by_test_id("register-name").fill("Grace Hopper")
    await page.get_by_test_id("login-email").fill(email)
    await page.get_by_test_id("login-password").fill("correct horse battery staple")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("project-list")).to_be_visible()

    await page.get_by_test_id("new-project").click()
    await page.get_by_label("Name").fill("compiler")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_test_id("file-tree")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/projects/[0-9a-f-]{36}$"))

    # No token is kept in storage; the session survives a reload through the httpOnly cookie.
    stored = await page.evaluate("() => [localStorage.length, sessionStorage.length]")
    assert stored == [0, 0]
    assert "vf_refresh" not in await page.evaluate("() => document.cookie")
    await page.reload()
    await expect(page.get_by_test_id("file-tree")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_test_id("login-email")).to_be_visible()
    await page.reload()
    await expect(page.get_by_test_id("login-email")).to_be_visible()
    cookies = await page.context.cookies()
    assert not [c for c in cookies if c["name"] == "vf_refresh"]


async def test_a_wrong_password_is_reported(people: Browsers) -> None:
    page = await people.page()
    await page.goto("/login")
    await page.get_by_test_id("login-email").fill(unique_email("nobody"))
    await page.get_by_test_id("login-password").fill("not the password")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_role("alert")).to_have_text("The email or password is wrong.")


async def test_the_mfa_step_when_the_account_has_a_second_factor(
    api: httpx.AsyncClient, people: Browsers
) -> None:
    who = await register(api, "mfa")
    enrol = await api.post("/api/v1/auth/mfa/enrol", headers=who.headers)
    assert enrol.status_code == 200, enrol.text
    totp = pyotp.TOTP(enrol.json()["secret"])
    confirm = await api.post(
        "/api/v1/auth/mfa/confirm", json={"code": totp.now()}, headers=who.headers
    )
    assert confirm.status_code == 200, confirm.text
    recovery: str = confirm.json()["recovery_codes"][0]

    page = await people.page()
    await page.goto("/")
    await page.get_by_test_id("login-email").fill(who.email)
    await page.get_by_test_id("login-password").fill(who.password)
    await page.get_by_test_id("login-submit").click()
    code = page.get_by_test_id("mfa-code")
    await code.fill("000000")
    await page.get_by_test_id("mfa-submit").click()
    await expect(page.get_by_role("alert")).to_have_text("That code is not valid.")
    await code.fill(recovery)
    await page.get_by_test_id("mfa-submit").click()
    await expect(page.get_by_test_id("project-list")).to_be_visible()
    # The second step set the session cookie as the first would have.
    await page.reload()
    await expect(page.get_by_test_id("project-list")).to_be_visible()
