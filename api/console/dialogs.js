// The two dialogs: asking for a token, and confirming an action with its reason.

import { setToken } from "./http.js";
import { byId } from "./dom.js";

// Resolves with the reason typed, or null when the operator backs out.
export function confirmAction({ title, text, confirmLabel, reasonRequired }) {
  const dialog = byId("confirm-dialog", HTMLDialogElement);
  const form = byId("confirm-form", HTMLFormElement);
  const reason = byId("confirm-reason", HTMLTextAreaElement);
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-need").textContent = reasonRequired ? "(required)" : "(optional)";
  document.getElementById("confirm-ok").textContent = confirmLabel;
  reason.value = "";
  reason.required = reasonRequired;
  return new Promise((resolve) => {
    const finish = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancelButton.removeEventListener("click", onBack);
      dialog.removeEventListener("cancel", onBack);
      dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const typed = reason.value.trim();
      if (reasonRequired && !typed) {
        reason.setCustomValidity("Say why: it is recorded on the event.");
        reason.reportValidity();
        reason.setCustomValidity("");
        return;
      }
      finish(typed);
    };
    const onBack = (event) => {
      event.preventDefault();
      finish(null);
    };
    const cancelButton = document.getElementById("confirm-cancel");
    form.addEventListener("submit", onSubmit);
    cancelButton.addEventListener("click", onBack);
    dialog.addEventListener("cancel", onBack);
    dialog.showModal();
    reason.focus();
  });
}

// Asks for a token until one is accepted by GET /v1/me; resolves false if dismissed.
export function askForToken(problem) {
  const dialog = byId("token-dialog", HTMLDialogElement);
  const form = byId("token-form", HTMLFormElement);
  const input = byId("token-input", HTMLInputElement);
  const error = byId("token-error", HTMLParagraphElement);
  error.textContent = problem && problem.detail && !/required/.test(problem.detail)
    ? "That token was not accepted." : "";
  input.value = "";
  return new Promise((resolve) => {
    const finish = (accepted) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      resolve(accepted);
    };
    const onSubmit = async (event) => {
      event.preventDefault();
      const candidate = input.value.trim();
      const response = await fetch("/v1/me", { headers: { Authorization: `Bearer ${candidate}` } });
      if (response.ok) {
        setToken(candidate);
        finish(true);
      } else {
        error.textContent = response.status === 401
          ? "That token was not accepted."
          : `The server answered ${response.status}.`;
        input.select();
      }
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
}
