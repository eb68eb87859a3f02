// Steward console: progressive enhancement only. Every page works without this file.
// Forms marked data-confirm ask before they submit (irreversible actions such as retire).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form && form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
