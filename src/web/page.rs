//! The `/targets` page: every job and its targets with health, last scrape, duration and
//! error, as one self-contained HTML document (inline CSS and script, no external asset,
//! nothing fetched after load).
//!
//! The server renders every target; the inline script only hides rows. It filters by job,
//! by health and by a free-text search over the endpoint and labels, keeps the filter in
//! the URL (`/targets?job=node&health=down,unknown&q=eu-`) so a filtered view can be
//! bookmarked or shared, and turns scrape times into "12s ago". Without JavaScript the
//! page still lists everything. Every value that comes from discovery or a target (label
//! values, URLs, errors) is HTML-escaped.

use super::{health_str, rfc3339_nano, sorted_targets};
use crate::coordinator::JobView;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const HEALTHS: [&str; 3] = ["up", "down", "unknown"];

/// The whole page for `view`.
pub(super) fn render(view: &BTreeMap<String, JobView>) -> String {
    let mut totals = [0usize; 3];
    let mut rows =
        String::with_capacity(256 * view.values().map(|j| j.targets.len()).sum::<usize>());
    let mut options = String::new();
    for (job, jv) in view {
        let mut job_totals = [0usize; 3];
        let mut body = String::new();
        for t in sorted_targets(jv) {
            let h = t.health.lock().clone();
            let health = health_str(h.up);
            let i = HEALTHS.iter().position(|x| *x == health).unwrap_or(2);
            job_totals[i] += 1;
            let url = t.display_url();
            let labels: Vec<String> = t
                .series_labels
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name, l.value))
                .collect();
            let search = format!("{url} {}", labels.join(" ")).to_lowercase();
            let _ = write!(
                body,
                "<tr data-health=\"{health}\" data-text=\"{}\"><td class=\"endpoint\"><a href=\"{}\">{}</a></td>\
                 <td><span class=\"badge {health}\">{}</span></td><td class=\"labels\">",
                esc(&search),
                esc(&url),
                esc(&url),
                health.to_uppercase()
            );
            for l in &labels {
                let _ = write!(body, "<span class=\"label\">{}</span> ", esc(l));
            }
            body.push_str("</td>");
            match h.up {
                Some(_) => {
                    let iso = rfc3339_nano(Some(h.last_scrape_ms));
                    let _ = write!(
                        body,
                        "<td><time datetime=\"{iso}\" data-ms=\"{}\">{iso}</time></td><td>{}</td>",
                        h.last_scrape_ms,
                        duration(h.last_duration_s)
                    );
                }
                None => body.push_str("<td class=\"muted\">never</td><td class=\"muted\">–</td>"),
            }
            let _ = writeln!(body, "<td class=\"error\">{}</td></tr>", esc(&h.last_error));
        }
        let n: usize = job_totals.iter().sum();
        for (t, j) in totals.iter_mut().zip(job_totals) {
            *t += j;
        }
        let _ = write!(
            options,
            "<option value=\"{}\">{} ({n})</option>",
            esc(job),
            esc(job)
        );
        let _ = write!(
            rows,
            "<section class=\"pool\" data-job=\"{}\" data-targets=\"{n}\"><h2>{} <span class=\"count {}\">{}/{n} up</span>",
            esc(job),
            esc(job),
            if job_totals[0] == n { "ok" } else { "bad" },
            job_totals[0],
        );
        if jv.dropped_count > 0 {
            let _ = write!(
                rows,
                " <span class=\"muted dropped\">{} dropped</span>",
                jv.dropped_count
            );
        }
        rows.push_str("</h2>");
        if n == 0 {
            rows.push_str("<p class=\"muted\">No active targets.</p>");
        } else {
            rows.push_str(
                "<table><colgroup><col class=\"c-endpoint\"><col class=\"c-state\"><col class=\"c-labels\">\
                 <col class=\"c-last\"><col class=\"c-duration\"><col class=\"c-error\"></colgroup>\
                 <thead><tr><th>Endpoint</th><th>State</th><th>Labels</th>\
                 <th>Last scrape</th><th>Duration</th><th>Error</th></tr></thead><tbody>\n",
            );
            rows.push_str(&body);
            rows.push_str("</tbody></table>");
        }
        rows.push_str("</section>\n");
    }
    let all: usize = totals.iter().sum();
    let mut health_boxes = String::new();
    for (h, n) in HEALTHS.iter().zip(totals) {
        let _ = write!(
            health_boxes,
            "<label class=\"check\"><input type=\"checkbox\" name=\"health\" value=\"{h}\" checked> \
             <span class=\"badge {h}\">{}</span> {n}</label>",
            h.to_uppercase()
        );
    }
    let mut out = String::with_capacity(rows.len() + 8192);
    out.push_str(HEAD);
    let _ = write!(
        out,
        "<form id=\"filters\" role=\"search\" onsubmit=\"return false\">\
         <label>Job <select id=\"job\" name=\"job\"><option value=\"\">All jobs ({all})</option>{options}</select></label>\
         <fieldset><legend>Health</legend>{health_boxes}</fieldset>\
         <label>Search <input type=\"search\" id=\"q\" name=\"q\" placeholder=\"endpoint or label\" autocomplete=\"off\"></label>\
         </form>\n<p id=\"summary\" class=\"muted\">{all} targets in {} jobs</p>\n\
         <p id=\"none\" class=\"muted\" hidden>No target matches the filter.</p>\n",
        view.len()
    );
    out.push_str(&rows);
    out.push_str(TAIL);
    out
}

/// A scrape duration the way people read it.
fn duration(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// HTML-escapes text for element content and double-quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Targets · scrapewheel</title>
<style>
:root{--fg:#1d2329;--muted:#69737d;--bg:#fff;--line:#e3e7eb;--head:#f5f7f9;--up:#1a7f37;--down:#cf222e;--unknown:#6e7781;--accent:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--bg:#0d1117;--line:#30363d;--head:#161b22;--up:#3fb950;--down:#f85149;--unknown:#8d96a0;--accent:#4493f8}}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;align-items:baseline;gap:24px;padding:12px 24px;border-bottom:1px solid var(--line);background:var(--head)}
header h1{font-size:18px;margin:0}
nav a{margin-right:16px;color:var(--accent);text-decoration:none}
nav a[aria-current]{font-weight:600;color:var(--fg)}
main{padding:16px 24px}
form{display:flex;flex-wrap:wrap;align-items:center;gap:16px 24px;margin-bottom:8px}
fieldset{border:0;margin:0;padding:0;display:flex;gap:12px;align-items:center}
legend{float:left;margin-right:8px}
select,input[type=search]{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
input[type=search]{width:16em}
.check{cursor:pointer;white-space:nowrap}
section.pool{margin:20px 0}
h2{font-size:16px;margin:0 0 8px}
.count{font-size:13px;font-weight:500;padding:1px 8px;border-radius:10px;border:1px solid currentColor}
.count.ok{color:var(--up)}.count.bad{color:var(--down)}
table{border-collapse:collapse;width:100%;table-layout:fixed}
.c-endpoint{width:24%}.c-state{width:7em}.c-labels{width:30%}.c-last{width:8em}.c-duration{width:6.5em}
th,td{text-align:left;vertical-align:top;padding:6px 10px;border-bottom:1px solid var(--line)}
th{background:var(--head);font-weight:600;white-space:nowrap}
td.endpoint a{color:var(--accent);overflow-wrap:anywhere}
.badge{display:inline-block;font-size:11px;font-weight:700;letter-spacing:.04em;padding:1px 7px;border-radius:4px;color:#fff}
.badge.up{background:var(--up)}.badge.down{background:var(--down)}.badge.unknown{background:var(--unknown)}
.label{display:inline-block;font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--head);border:1px solid var(--line);border-radius:4px;padding:0 5px;margin:1px 0;word-break:break-all}
td.error{color:var(--down);font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
.muted{color:var(--muted)}
h2 .dropped{font-size:13px;font-weight:400}
time{white-space:nowrap}
[hidden]{display:none!important}
</style></head>
<body><header><h1>scrapewheel</h1><nav><a href="/targets" aria-current="page">Targets</a><a href="/metrics">Metrics</a><a href="/api/v1/targets">Targets API</a></nav></header>
<main>
"#;

const TAIL: &str = r#"</main>
<script>
(function () {
  "use strict";
  var job = document.getElementById("job");
  var q = document.getElementById("q");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=health]"));
  var pools = Array.prototype.slice.call(document.querySelectorAll("section.pool"));
  var summary = document.getElementById("summary");
  var none = document.getElementById("none");

  function ago(ms) {
    var s = Math.max(0, ms) / 1000;
    if (s < 60) return s.toFixed(1) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s ago";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m ago";
  }

  function apply(remember) {
    var want = {};
    boxes.forEach(function (b) { want[b.value] = b.checked; });
    var text = q.value.trim().toLowerCase();
    var shown = 0, total = 0, jobsShown = 0;
    pools.forEach(function (sec) {
      var jobOk = !job.value || sec.dataset.job === job.value;
      var rows = sec.querySelectorAll("tbody tr");
      var any = false;
      Array.prototype.forEach.call(rows, function (tr) {
        total++;
        var ok = jobOk && want[tr.dataset.health] && (!text || tr.dataset.text.indexOf(text) >= 0);
        tr.hidden = !ok;
        if (ok) { shown++; any = true; }
      });
      // A job without targets stays visible while it is not filtered out by name.
      var empty = rows.length === 0 && jobOk && !text;
      sec.hidden = !(any || empty);
      if (!sec.hidden) jobsShown++;
    });
    summary.textContent = shown + " of " + total + " targets shown in " + jobsShown + " of " + pools.length + " jobs";
    none.hidden = shown > 0 || total === 0;
    if (remember) {
      var p = new URLSearchParams();
      if (job.value) p.set("job", job.value);
      var hs = boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
      if (hs.length !== boxes.length) p.set("health", hs.join(","));
      if (text) p.set("q", q.value.trim());
      var qs = p.toString();
      history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
    }
  }

  var p = new URLSearchParams(location.search);
  if (p.has("job")) job.value = p.get("job");
  if (job.selectedIndex < 0) job.value = "";
  if (p.has("health")) {
    var hs = p.get("health").toLowerCase().split(",");
    boxes.forEach(function (b) { b.checked = hs.indexOf(b.value) >= 0; });
  }
  if (p.has("q")) q.value = p.get("q");

  var now = Date.now();
  Array.prototype.forEach.call(document.querySelectorAll("time[data-ms]"), function (t) {
    t.title = t.getAttribute("datetime");
    t.textContent = ago(now - Number(t.dataset.ms));
  });

  job.addEventListener("change", function () { apply(true); });
  boxes.forEach(function (b) { b.addEventListener("change", function () { apply(true); }); });
  q.addEventListener("input", function () { apply(true); });
  apply(false);
})();
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.000_25), "250µs");
        assert_eq!(duration(0.0123), "12.3ms");
        assert_eq!(duration(2.5), "2.50s");
    }

    #[test]
    fn an_empty_view_is_a_whole_page() {
        let html = render(&BTreeMap::new());
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains("All jobs (0)"));
        // No external asset: nothing is loaded from anywhere.
        for needle in ["src=", "<link", "@import", "url("] {
            assert!(!html.contains(needle), "page refers to an asset: {needle}");
        }
    }
}
