// Keyboard navigation between exchanges (j or ArrowRight for older, k or
// ArrowLeft for newer, Escape for the list) and the copy button of the curl
// command.

const KEYS = { j: "older", ArrowRight: "older", k: "newer", ArrowLeft: "newer", Escape: "back" };

function typingInField(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || typingInField(event.target)) {
    return;
  }
  const link = KEYS[event.key] && document.getElementById(KEYS[event.key]);
  if (link) {
    event.preventDefault();
    window.location.assign(link.href);
  }
});

async function copyText(text) {
  // navigator.clipboard exists only in secure contexts, and the appliance is
  // usually reached over plain HTTP, so a hidden textarea is the fallback.
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "offscreen";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) {
    throw new Error("the browser rejected the copy command");
  }
}

const button = document.getElementById("copy-curl");
const status = document.getElementById("copy-status");
button?.addEventListener("click", async () => {
  const text = document.getElementById(button.dataset.copyTarget).textContent;
  try {
    await copyText(text);
    status.textContent = "copied";
  } catch {
    status.textContent = "copy failed: select the command and copy it by hand";
  }
});
