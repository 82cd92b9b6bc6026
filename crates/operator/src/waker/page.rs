//! The waker's pages: a workspace starting (it follows the progress and
//! opens the dashboard once the workspace itself answers), a sign-in
//! prompt, and how to start an oauth2 workspace. Plain HTML with a few
//! lines of script; no assets to fetch from a host that is changing hands.

use crate::names::WAKE_STATUS_PATH;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font:16px system-ui,sans-serif;margin:0;display:grid;place-items:center;min-height:100vh;\
         background:#f6f7f9;color:#1b1f24}}main{{max-width:32rem;padding:2rem}}\
         code{{background:#e8eaee;padding:.1rem .3rem;border-radius:3px}}\
         .muted{{color:#5b6470}}@media (prefers-color-scheme:dark){{body{{background:#11141b;color:#e6e8eb}}\
         code{{background:#232834}}.muted{{color:#9aa3ad}}}}</style></head>\
         <body><main>{body}</main></body></html>"
    )
}

/// The workspace is starting: the page asks the waker for its progress
/// every second; an answer that is not the waker's (the Ingress now leads
/// to the workspace) means the dashboard is there, so it reloads.
pub fn starting(workspace: &str, phase: &str) -> String {
    let name = escape(workspace);
    let body = format!(
        "<h1>Starting {name}</h1>\
         <p role=\"status\" id=\"phase\">{phase}</p>\
         <p class=\"muted\" id=\"detail\">The dashboard opens here as soon as the workspace answers.</p>\
         <script>\
         const t0=Date.now();\
         async function look(){{\
           let r;try{{r=await fetch(\"{WAKE_STATUS_PATH}\",{{cache:\"no-store\",credentials:\"same-origin\"}});}}catch(e){{r=null;}}\
           const secs=Math.round((Date.now()-t0)/1000);\
           if(r&&!r.headers.get(\"x-kube-coder-waker\")&&r.status<502){{location.reload();return;}}\
           let phase=\"Starting\",msg=\"\";\
           if(r&&r.headers.get(\"x-kube-coder-waker\")&&r.ok){{const s=await r.json();phase=s.phase;msg=s.message||\"\";}}\
           else{{msg=\"waiting for the workspace to answer\";}}\
           document.getElementById(\"phase\").textContent=phase+\" (\"+secs+\" s)\";\
           document.getElementById(\"detail\").textContent=msg||\"The dashboard opens here as soon as the workspace answers.\";\
           setTimeout(look,1000);\
         }}\
         setTimeout(look,1000);\
         </script>",
        phase = escape(phase),
    );
    shell(&format!("Starting {name}"), &body)
}

/// No login given: the browser asks for the dashboard's own.
pub fn sign_in(workspace: &str, state: &str) -> String {
    let name = escape(workspace);
    shell(
        &format!("{name} is {state}"),
        &format!(
            "<h1>{name} is {state}</h1><p>Sign in with the workspace's login to start it \
             (<code>kube-coder token {name} --login</code> prints it).</p>"
        ),
    )
}

/// An oauth2 workspace and no session of its login proxy for a login on
/// its allow list: a new sign-in needs the proxy, which runs with it.
pub fn how_to_start(workspace: &str, state: &str) -> String {
    let name = escape(workspace);
    shell(
        &format!("{name} is {state}"),
        &format!(
            "<h1>{name} is {state}</h1><p>This browser has no sign-in to it that is on its \
             allow list, and signing in needs its login proxy, which runs with it. Open it \
             in the browser you last used it in, or start it with \
             <code>kube-coder user start {name}</code> or a request to its API host \
             carrying its API token, then reload this page.</p>"
        ),
    )
}
