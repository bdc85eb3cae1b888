// The logout page: post the end-session form to the provider at once. Our CSP forbids inline scripts,
// hence this file; without JavaScript the form's button does the same.
"use strict";
(() => {
  const form = document.getElementById("end-session");
  if (form) form.submit();
})();
