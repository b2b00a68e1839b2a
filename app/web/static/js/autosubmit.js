// Submit a filter form as soon as one of its [data-autosubmit] selects changes.

for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.requestSubmit());
}
