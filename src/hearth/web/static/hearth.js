// Hearth sign-in pages: WebAuthn ceremonies and the show-password switch.
// Served from /static (the pages' Content-Security-Policy allows script from this origin only;
// there is no inline script anywhere). Uses the WebAuthn Level 3 JSON helpers
// (PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON, toJSON).
"use strict";

(function () {
  function setStatus(button, state, message) {
    const box = button.parentElement.querySelector(".status");
    button.dataset.state = state;
    if (box) {
      box.textContent = message; // text only, never HTML
      box.setAttribute("role", state === "error" ? "alert" : "status");
    }
  }

  async function postJSON(url, csrf, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (ignored) {
      data = { error: "The server sent an unexpected answer." };
    }
    return { ok: response.ok, data: data };
  }

  async function ceremony(button) {
    if (!window.PublicKeyCredential) {
      setStatus(button, "error", "This browser does not support security keys or passkeys.");
      return;
    }
    const action = button.dataset.webauthn;
    const extra = {};
    if (button.dataset.token) extra.token = button.dataset.token;
    if (button.dataset.platform) extra.platform = button.dataset.platform;
    if (button.dataset.next) extra.next = button.dataset.next;
    const nameField = button.dataset.nameField && document.getElementById(button.dataset.nameField);
    if (nameField && nameField.value) extra.name = nameField.value;
    button.disabled = true;
    setStatus(button, "working", "Follow your browser's prompt…");
    try {
      const first = await postJSON(button.dataset.options, button.dataset.csrf, extra);
      if (!first.ok) {
        if (first.data.redirect) {
          window.location.assign(first.data.redirect);
          return;
        }
        throw new Error(first.data.error || "The request was refused.");
      }
      let credential;
      if (action === "create") {
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(first.data.options);
        credential = await navigator.credentials.create({ publicKey: publicKey });
      } else {
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(first.data.options);
        credential = await navigator.credentials.get({ publicKey: publicKey });
      }
      const second = await postJSON(button.dataset.verify, first.data.csrf || button.dataset.csrf,
        Object.assign({ credential: credential.toJSON() }, extra));
      if (!second.ok) {
        if (second.data.redirect) {
          window.location.assign(second.data.redirect);
          return;
        }
        throw new Error(second.data.error || "The key was not accepted.");
      }
      setStatus(button, "done", "Done.");
      window.location.assign(second.data.redirect || "/");
    } catch (error) {
      const message = error && error.name === "NotAllowedError"
        ? "The key did not respond or the request was cancelled. Try again."
        : (error && error.message) || "Something went wrong. Try again.";
      setStatus(button, "error", message);
      button.disabled = false;
    }
  }

  function start() {
    document.querySelectorAll("[data-webauthn]").forEach(function (button) {
      button.addEventListener("click", function () { ceremony(button); });
    });
    document.querySelectorAll("[data-show-password]").forEach(function (box) {
      box.addEventListener("change", function () {
        const input = document.getElementById(box.dataset.showPassword);
        if (input) input.type = box.checked ? "text" : "password";
      });
    });
    const error = document.getElementById("error");
    if (error) error.focus();
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
