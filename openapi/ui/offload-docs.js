// Starts Swagger UI on the OpenAPI document served beside this page. It is a
// file rather than an inline script so that the page's Content-Security-Policy
// can forbid inline scripts.
"use strict";

(function () {
  // The session call's token authorizes the later calls, so "Try it out" is
  // two clicks: issue a session, then generate a breakdown.
  function authorizeFromSession(res) {
    if (res.ok && /\/v1\/sessions\/anonymous$/.test(new URL(res.url, location.href).pathname)) {
      var body = res.body || {};
      if (typeof body.session_token === "string") {
        ui.preauthorizeApiKey("sessionToken", body.session_token);
      }
    }
    return res;
  }

  var ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // Never send the document to the public validator service.
    validatorUrl: "none",
    tryItOutEnabled: true,
    displayRequestDuration: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    // Tokens stay in this page's memory, not in localStorage.
    persistAuthorization: false,
    responseInterceptor: authorizeFromSession,
  });
  window.ui = ui;
})();
