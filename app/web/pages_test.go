package web

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestPagesFillEverySlotAndEscapeTheInstance(t *testing.T) {
	const hostile = `<script>alert("x")</script>&`
	for _, tc := range []struct {
		name, count string
	}{
		{"index.html", "999"}, // no slot: the count is not shown
		{"count.html", "12345"},
	} {
		rec := httptest.NewRecorder()
		writePage(rec, 200, newPage(tc.name, hostile), tc.count)
		body := rec.Body.String()

		if strings.Contains(body, "{{") {
			t.Errorf("%s has an unfilled slot:\n%s", tc.name, body)
		}
		if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;") {
			t.Errorf("%s does not escape the instance name:\n%s", tc.name, body)
		}
		if !strings.HasPrefix(body, "<!doctype html>") || !strings.HasSuffix(body, "</html>\n") {
			t.Errorf("%s is not a whole page:\n%s", tc.name, body)
		}
		if shown := strings.Contains(body, tc.count); shown != (tc.name == "count.html") {
			t.Errorf("%s shows the count %s: %v, want it only on count.html:\n%s", tc.name, tc.count, shown, body)
		}
		if tc.name == "count.html" && !strings.Contains(body, `<p class="count">`+tc.count+`</p>`) {
			t.Errorf("%s lacks the count %s in its place:\n%s", tc.name, tc.count, body)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Errorf("%s: Content-Length %s for a body of %d bytes", tc.name, cl, len(body))
		}
	}
}
