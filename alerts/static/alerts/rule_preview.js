// The admin's rule preview answers 400 with the form's errors (404 for a rule deleted
// meanwhile), which htmx does not swap in by default: show them in the preview area.
document.addEventListener("htmx:beforeSwap", function (event) {
  var status = event.detail.xhr.status;
  if ((status === 400 || status === 404) && event.detail.target && event.detail.target.id === "rule-preview") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
