// wasi:http guest in JavaScript: answers every request with "Hello, World!" (StarlingMonkey's fetch event).
addEventListener("fetch", (event) =>
  event.respondWith(new Response("Hello, World!", { headers: { "content-type": "text/plain" } })),
);
