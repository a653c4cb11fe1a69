// Command required-labels-go is the required-labels release hook (release-hook v1) written in Go
// with the standard library only: the same rule as the Rust hook in ../required-labels, built
// with GOOS=wasip1 GOARCH=wasm into a WASI preview 1 command module.
//
// Protocol: argv is ["hook", "check"] or ["hook", "validate-settings"] (no argument means
// check); stdin is one HookRequest; stdout gets one HookResponse and the module exits 0. A
// request that cannot be read, an unknown command, or settings that are invalid during check
// is a hook error: a line on stderr and exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

const (
	apiVersion  = "kubectl-release.io/hooks/v1"
	requestKind = "HookRequest"
	pinAdvice   = "pin it by digest (@sha256:…) or tag it with the full commit hash"
)

// request holds the parts of a HookRequest this rule reads; the rest is ignored.
type request struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Settings   json.RawMessage   `json:"settings"`
	Workloads  []json.RawMessage `json:"workloads"`
}

type workloadRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type violation struct {
	Workload *workloadRef `json:"workload"`
	Field    *string      `json:"field"`
	Message  string       `json:"message"`
}

type response struct {
	Allowed    bool        `json:"allowed"`
	Message    *string     `json:"message"`
	Violations []violation `json:"violations"`
	Warnings   []string    `json:"warnings"`
}

// rule is one required label: its key and the pattern its value must match.
type rule struct {
	key     string
	pattern *regexp.Regexp
}

func main() {
	out, err := serve(os.Args, os.Stdin)
	if err == nil {
		_, err = os.Stdout.Write(out)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

// serve runs one command and returns the response document to print.
func serve(args []string, stdin io.Reader) ([]byte, error) {
	command := "check"
	if len(args) > 1 {
		command = args[1]
	}
	if command != "check" && command != "validate-settings" {
		return nil, fmt.Errorf("unknown command `%s`: expected `check` or `validate-settings`", command)
	}
	input, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("cannot read stdin: %v", err)
	}
	var req request
	if err := json.Unmarshal(input, &req); err != nil {
		return nil, fmt.Errorf("cannot read the HookRequest on stdin: %v", err)
	}
	if req.APIVersion != apiVersion {
		return nil, fmt.Errorf("unsupported apiVersion `%s`: this hook understands `%s`", req.APIVersion, apiVersion)
	}
	if req.Kind != requestKind {
		return nil, fmt.Errorf("unexpected kind `%s`: expected `%s`", req.Kind, requestKind)
	}

	rules, settingsErr := compileSettings(req.Settings)
	var resp response
	switch {
	case command == "validate-settings" && settingsErr == nil:
		resp = response{Allowed: true}
	case command == "validate-settings":
		msg := settingsErr.Error()
		resp = response{Allowed: false, Message: &msg}
	case settingsErr != nil:
		// A misconfigured rule never decides anything: a hook error, as in the Rust SDK.
		return nil, settingsErr
	default:
		resp, err = check(req.Workloads, rules)
		if err != nil {
			return nil, err
		}
	}
	if resp.Violations == nil {
		resp.Violations = []violation{}
	}
	if resp.Warnings == nil {
		resp.Warnings = []string{}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("cannot write the response: %v", err)
	}
	return append(out, '\n'), nil
}

// compileSettings reads `{"labels": {key: pattern}}` (null or absent settings mean `{}`,
// unknown fields are refused) and compiles every pattern, in key order.
func compileSettings(raw json.RawMessage) ([]rule, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, errors.New("invalid settings: expected an object like {\"labels\": {\"team\": \"^[a-z-]+$\"}}")
	}
	for name := range fields {
		if name != "labels" {
			return nil, fmt.Errorf("invalid settings: unknown field `%s`, expected `labels`", name)
		}
	}
	labelsRaw, ok := fields["labels"]
	if !ok {
		return nil, nil
	}
	var labels map[string]string
	if err := json.Unmarshal(labelsRaw, &labels); err != nil || labels == nil {
		return nil, errors.New("invalid settings: `labels` must map label keys to regular expressions (strings)")
	}
	keys := make([]string, 0, len(labels))
	for key := range labels {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	rules := make([]rule, 0, len(keys))
	for _, key := range keys {
		re, err := regexp.Compile(labels[key])
		if err != nil {
			return nil, fmt.Errorf("labels.%s: `%s` is not a valid regular expression: %v", key, labels[key], err)
		}
		rules = append(rules, rule{key: key, pattern: re})
	}
	return rules, nil
}

// check applies the rule to every workload and collects every violation.
func check(workloads []json.RawMessage, rules []rule) (response, error) {
	var violations []violation
	for i, raw := range workloads {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // label values that are numbers keep their text
		var workload any
		if err := dec.Decode(&workload); err != nil {
			return response{}, fmt.Errorf("cannot read workloads[%d]: %v", i, err)
		}
		at := workloadRef{
			Kind:      str(get(workload, "kind")),
			Namespace: str(get(workload, "metadata", "namespace")),
			Name:      str(get(workload, "metadata", "name")),
		}
		violations = checkLabels(violations, rules, at, "metadata.labels", get(workload, "metadata", "labels"))
		path, template := podTemplate(workload)
		if template == nil {
			continue
		}
		violations = checkLabels(violations, rules, at, path+".metadata.labels", get(template, "metadata", "labels"))
		for _, list := range []string{"initContainers", "containers"} {
			containers, _ := get(template, "spec", list).([]any)
			for j, container := range containers {
				image := str(get(container, "image"))
				if isImmutableReference(image) {
					continue
				}
				field := fmt.Sprintf("%s.spec.%s[%d].image", path, list, j)
				violations = append(violations, violation{
					Workload: ref(at),
					Field:    &field,
					Message:  fmt.Sprintf("container `%s`: %s", str(get(container, "name")), imageProblem(image)),
				})
			}
		}
	}
	if len(violations) == 0 {
		return response{Allowed: true}, nil
	}
	msg := fmt.Sprintf("%d problems with labels or images; fix the manifests and release again", len(violations))
	return response{Allowed: false, Message: &msg, Violations: violations}, nil
}

func checkLabels(violations []violation, rules []rule, at workloadRef, field string, labelsValue any) []violation {
	labels, _ := labelsValue.(map[string]any)
	for _, r := range rules {
		value, present := labels[r.key]
		var message string
		switch {
		case !present:
			message = fmt.Sprintf("missing label `%s`", r.key)
		case !r.pattern.MatchString(labelText(value)):
			message = fmt.Sprintf("label `%s=%s` does not match `%s`", r.key, labelText(value), r.pattern.String())
		default:
			continue
		}
		f := field + "." + r.key
		violations = append(violations, violation{Workload: ref(at), Field: &f, Message: message})
	}
	return violations
}

// podTemplate returns where the pod template lives and the template object: spec.template, or
// spec.jobTemplate.spec.template for a CronJob; nil if the workload has none.
func podTemplate(workload any) (string, map[string]any) {
	if get(workload, "kind") == "CronJob" {
		t, _ := get(workload, "spec", "jobTemplate", "spec", "template").(map[string]any)
		return "spec.jobTemplate.spec.template", t
	}
	t, _ := get(workload, "spec", "template").(map[string]any)
	return "spec.template", t
}

// get walks object keys; nil when any step is missing or not an object.
func get(v any, keys ...string) any {
	for _, key := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// labelText is a label's value as text: strings as they are, anything else as its JSON.
func labelText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func ref(at workloadRef) *workloadRef { return &at }

// imageDigest is the digest after the last `@` when it is sha256 and 64 lower-case hex digits.
func imageDigest(reference string) (string, bool) {
	i := strings.LastIndexByte(reference, '@')
	if i < 0 {
		return "", false
	}
	digest := reference[i+1:]
	hex, ok := strings.CutPrefix(digest, "sha256:")
	return digest, ok && len(hex) == 64 && isLowerHex(hex)
}

// imageTag is the tag: after the last `:` of the last path segment, before any `@` (a `:` in
// the first segment is a registry port).
func imageTag(reference string) (string, bool) {
	if i := strings.IndexByte(reference, '@'); i >= 0 {
		reference = reference[:i]
	}
	lastSegment := strings.LastIndexByte(reference, '/') + 1
	j := strings.LastIndexByte(reference[lastSegment:], ':')
	if j < 0 {
		return "", false
	}
	return reference[lastSegment+j+1:], true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isCommitTag(tag string) bool { return len(tag) == 40 && isLowerHex(tag) }

func isImmutableReference(reference string) bool {
	if _, ok := imageDigest(reference); ok {
		return true
	}
	tag, ok := imageTag(reference)
	return ok && isCommitTag(tag)
}

func imageProblem(image string) string {
	if image == "" {
		return "has no image"
	}
	tag, hasTag := imageTag(image)
	_, hasDigest := imageDigest(image)
	switch {
	case !hasTag && !hasDigest:
		return fmt.Sprintf("image `%s` has no tag, which means `latest`; %s", image, pinAdvice)
	case hasTag && tag == "latest":
		return fmt.Sprintf("image `%s` uses `latest`, which changes under running pods; %s", image, pinAdvice)
	default:
		return fmt.Sprintf("image `%s` uses a tag that can be moved; %s", image, pinAdvice)
	}
}
