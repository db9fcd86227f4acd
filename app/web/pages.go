package web

import (
	"embed"
	"html"
	"net/http"
	"strconv"
	"strings"
)

// The pages are HTML files with three slots: {{body}} in the layout, and
// {{instance}} and {{count}}. They are filled by substitution, not by
// html/template, for the image's sake: templates call methods by name through
// reflection, which makes the linker keep every exported method of every type
// in the binary — go-redis's hundreds of commands among them, 8 of the image's
// 20 MB. Two values need no template engine: the instance is escaped once at
// start, and the count is digits.

//go:embed pages/*.html
var pageFS embed.FS

// page is one page for this instance, split around its {{count}} slot.
type page struct {
	head, tail string
	slot       bool // whether the page shows a count
}

// newPage builds a page from the layout and pages/name. It fails only if the
// embedded files lack their slots, which a test of every page catches.
func newPage(name, instance string) page {
	read := func(file string) string {
		b, err := pageFS.ReadFile("pages/" + file)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	layout := read("layout.html")
	if !strings.Contains(layout, "{{body}}") || !strings.Contains(layout, "{{instance}}") {
		panic("pages/layout.html lacks {{body}} or {{instance}}")
	}
	s := strings.Replace(layout, "{{body}}", read(name), 1)
	s = strings.ReplaceAll(s, "{{instance}}", html.EscapeString(instance))
	head, tail, slot := strings.Cut(s, "{{count}}")
	return page{head: head, tail: tail, slot: slot}
}

// writePage answers p with count in its slot, or with nothing there for a
// page that has none.
func writePage(w http.ResponseWriter, status int, p page, count string) {
	if !p.slot {
		count = ""
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(p.head)+len(count)+len(p.tail)))
	w.WriteHeader(status)
	// Three writes into the server's buffer rather than one concatenated
	// string: no copy of the page per request. A failed write means the
	// client has gone.
	for _, s := range [...]string{p.head, count, p.tail} {
		if _, err := w.Write([]byte(s)); err != nil {
			return
		}
	}
}
