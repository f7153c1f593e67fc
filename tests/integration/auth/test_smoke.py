from __future__ import annotations


def test_enrol_then_sign_in_with_password_and_totp(site):
    token = site.add_user("alice")
    b = site.browser()
    codes = b.enrol_password(token)
    assert len(codes) == 10
    r = b.get("/")
    assert r.status_code == 200, r.text
    assert "Welcome, Alice" in r.text
    b.post("/logout", {})
    assert b.get("/").status_code == 303
    r = b.sign_in("alice")
    assert r.status_code == 303, r.text
    assert "Welcome" in b.get("/").text
