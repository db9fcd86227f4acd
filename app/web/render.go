package web

import (
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

const (
	typeHTML = "text/html"
	typeJSON = "application/json"
	typeText = "text/plain"
)

// view is one answer in each format a client may ask for.
type view struct {
	json  any    // marshalled as JSON
	text  string // plain text
	page  page   // HTML, with count in its slot
	count string
}

// render answers v in the format the client asks for: HTML by default,
// JSON or plain text when the Accept header prefers them.
func render(w http.ResponseWriter, r *http.Request, status int, v view) {
	switch negotiate(r.Header.Get("Accept"), typeHTML, typeJSON, typeText) {
	case typeJSON:
		writeJSON(w, status, v.json)
	case typeText:
		writeText(w, status, v.text)
	default:
		writePage(w, status, v.page, v.count)
	}
}

// writeStatus answers a one-word status (healthz, readyz) as text or JSON.
func writeStatus(w http.ResponseWriter, r *http.Request, code int, status string) {
	if negotiate(r.Header.Get("Accept"), typeText, typeJSON) == typeJSON {
		writeJSON(w, code, map[string]string{"status": status})
		return
	}
	writeText(w, code, status+"\n")
}

// writeError answers a short error as text, or JSON when asked; never HTML or
// a stack trace.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	if negotiate(r.Header.Get("Accept"), typeText, typeJSON) == typeJSON {
		writeJSON(w, code, map[string]string{"error": msg})
		return
	}
	writeText(w, code, msg+"\n")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own fixed types reach here
		panic(err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(s)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

// negotiate picks the offer the Accept header rates highest, preferring
// earlier offers on a tie. Anything unparsable or unmatched gets the first
// offer: a visit counter has no reason to answer 406.
func negotiate(accept string, offers ...string) string {
	if accept == "" {
		return offers[0]
	}
	best, bestQ := offers[0], 0.0
	for _, offer := range offers {
		if q := quality(accept, offer); q > bestQ {
			best, bestQ = offer, q
		}
	}
	return best
}

// quality is the q-value of the most specific media range matching offer.
func quality(accept, offer string) float64 {
	q, specificity := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		s := matches(mediaType, offer)
		if s <= specificity {
			continue
		}
		pq := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				pq = f
			}
		}
		q, specificity = pq, s
	}
	return q
}

// matches says how specifically a media range names offer: 2 exact,
// 1 type/*, 0 */*, -1 not at all.
func matches(mediaRange, offer string) int {
	switch {
	case mediaRange == offer:
		return 2
	case mediaRange == "*/*":
		return 0
	case strings.HasSuffix(mediaRange, "/*") && strings.HasPrefix(offer, strings.TrimSuffix(mediaRange, "*")):
		return 1
	default:
		return -1
	}
}
