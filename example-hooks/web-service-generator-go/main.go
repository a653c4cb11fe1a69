// Command web-service-generator-go is the web-service generator (generator v1) written in Go
// with the standard library only: the same objects as the Rust generator in
// ../web-service-generator, built with GOOS=wasip1 GOARCH=wasm into a WASI preview 1 command
// module.
//
// Protocol: argv is ["generator", "generate"] or ["generator", "validate-settings"] (no
// argument means generate); stdin is one GenerateRequest; stdout gets one GenerateResponse,
// {"objects": [...]} or {"error": "..."}, and the module exits 0. A request that cannot be read
// or an unknown command is a line on stderr and exit status 1.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

const (
	generatorAPIVersion = "kubectl-release.io/generators/v1"
	nameLabel           = "app.kubernetes.io/name"
)

// object is a JSON object; encoding/json writes its keys sorted.
type object = map[string]any

type request struct {
	APIVersion  string          `json:"apiVersion"`
	Kind        string          `json:"kind"`
	App         string          `json:"app"`
	Image       string          `json:"image"`
	Environment string          `json:"environment"`
	Namespace   string          `json:"namespace"`
	Spec        json.RawMessage `json:"spec"`
	Settings    json.RawMessage `json:"settings"`
}

type appSpec struct {
	Containers   map[string]container `json:"containers"`
	Replicas     *uint32              `json:"replicas"`
	Service      *serviceSpec         `json:"service"`
	Autoscaling  *autoscaling         `json:"autoscaling"`
	Environments map[string]any       `json:"environments"`
}

type container struct {
	Command        []string          `json:"command"`
	Args           []string          `json:"args"`
	Ports          []port            `json:"ports"`
	Variables      map[string]string `json:"variables"`
	Env            map[string]string `json:"env"` // accepted alias of variables
	Resources      *resources        `json:"resources"`
	ReadinessProbe *probe            `json:"readinessProbe"`
}

type port struct {
	Name     string  `json:"name"`
	Port     uint16  `json:"port"`
	Protocol *string `json:"protocol"`
}

type resources struct {
	Requests *quantities `json:"requests,omitempty"`
	Limits   *quantities `json:"limits,omitempty"`
}

type quantities struct {
	CPU    *string `json:"cpu,omitempty"`
	Memory *string `json:"memory,omitempty"`
}

type probe struct {
	HTTPGet httpGet `json:"httpGet"`
}

type httpGet struct {
	Path string `json:"path"`
	Port uint16 `json:"port"`
}

type serviceSpec struct {
	Port       uint16  `json:"port"`
	TargetPort *uint16 `json:"targetPort"`
}

type autoscaling struct {
	Min uint32 `json:"min"`
	Max uint32 `json:"max"`
	CPU uint32 `json:"cpu"`
}

type settings struct {
	Labels                        map[string]string
	PodDisruptionBudgetAPIVersion string
	AutoscalingAPIVersion         string
}

type response struct {
	Objects []any  `json:"objects"`
	Error   string `json:"error,omitempty"`
}

func main() {
	if err := run(os.Args, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	command := "generate"
	if len(args) > 1 {
		command = args[1]
	}
	if command != "generate" && command != "validate-settings" {
		return fmt.Errorf("unknown command `%s`: expected `generate` or `validate-settings`", command)
	}
	input, err := io.ReadAll(stdin)
	if err != nil {
		return fmt.Errorf("cannot read stdin: %v", err)
	}
	var req request
	if err := json.Unmarshal(input, &req); err != nil {
		return fmt.Errorf("cannot read the GenerateRequest on stdin: %v", err)
	}
	if req.APIVersion != generatorAPIVersion {
		return fmt.Errorf("unsupported apiVersion `%s`: this generator understands `%s`", req.APIVersion, generatorAPIVersion)
	}
	spec, err := readSpec(req.Spec)
	if err != nil {
		return fmt.Errorf("cannot read the GenerateRequest on stdin: spec: %v", err)
	}

	resp := response{Objects: []any{}}
	s, err := readSettings(req.Settings)
	if err != nil {
		resp.Error = "invalid settings: " + err.Error()
	} else if command == "generate" {
		objects, err := generate(&req, spec, s)
		if err != nil {
			resp.Error = err.Error()
		} else {
			resp.Objects = objects
		}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("cannot write the response to stdout: %v", err)
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		return fmt.Errorf("cannot write the response to stdout: %v", err)
	}
	return nil
}

// readSpec reads the app spec, refusing unknown fields as the Rust SDK's AppSpec does.
func readSpec(raw json.RawMessage) (*appSpec, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing field `spec`")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var spec appSpec
	if err := dec.Decode(&spec); err != nil {
		return nil, err
	}
	if spec.Containers == nil {
		return nil, errors.New("missing field `containers`")
	}
	for name, c := range spec.Containers {
		if c.Variables == nil {
			c.Variables = map[string]string{}
		}
		for k, v := range c.Env {
			c.Variables[k] = v
		}
		c.Env = nil
		for i := range c.Ports {
			if c.Ports[i].Protocol == nil {
				tcp := "TCP"
				c.Ports[i].Protocol = &tcp
			}
		}
		spec.Containers[name] = c
	}
	return &spec, nil
}

var settingsFields = "`labels`, `podDisruptionBudgetApiVersion`, `autoscalingApiVersion`"

// readSettings reads the settings like the Rust generator's serde: unknown fields are refused,
// absent ones take their defaults, and null is an empty object.
func readSettings(raw json.RawMessage) (settings, error) {
	s := settings{
		Labels:                        map[string]string{},
		PodDisruptionBudgetAPIVersion: "policy/v1beta1",
		AutoscalingAPIVersion:         "autoscaling/v2beta2",
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return s, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil || fields == nil {
		return s, fmt.Errorf("invalid type: %s, expected struct Settings", describe(trimmed))
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		value := fields[name]
		var err error
		switch name {
		case "labels":
			err = json.Unmarshal(value, &s.Labels)
		case "podDisruptionBudgetApiVersion":
			err = json.Unmarshal(value, &s.PodDisruptionBudgetAPIVersion)
		case "autoscalingApiVersion":
			err = json.Unmarshal(value, &s.AutoscalingAPIVersion)
		default:
			return s, fmt.Errorf("unknown field `%s`, expected one of %s", name, settingsFields)
		}
		// serde refuses null for a field that is not an Option; encoding/json would skip it.
		if err != nil || string(bytes.TrimSpace(value)) == "null" {
			return s, fmt.Errorf("invalid type for `%s`: %s", name, describe(value))
		}
	}
	return s, nil
}

func describe(raw json.RawMessage) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "invalid JSON"
	}
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "sequence"
	default:
		return "map"
	}
}

func generate(req *request, spec *appSpec, s settings) ([]any, error) {
	if s.PodDisruptionBudgetAPIVersion != "policy/v1beta1" && s.PodDisruptionBudgetAPIVersion != "policy/v1" {
		return nil, errors.New("settings.podDisruptionBudgetApiVersion must be policy/v1beta1 or policy/v1")
	}
	if s.AutoscalingAPIVersion != "autoscaling/v2beta2" && s.AutoscalingAPIVersion != "autoscaling/v2" {
		return nil, errors.New("settings.autoscalingApiVersion must be autoscaling/v2beta2 or autoscaling/v2")
	}
	if len(spec.Containers) == 0 {
		return nil, errors.New("the spec has no containers")
	}
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[nameLabel] = req.App
	selector := func() object { return object{nameLabel: req.App} }

	objects := []any{deployment(req, spec, labels, selector())}
	if svc := spec.Service; svc != nil {
		target := svc.Port
		if svc.TargetPort != nil {
			target = *svc.TargetPort
		} else if first, ok := firstPort(spec); ok {
			target = first
		}
		objects = append(objects, object{
			"apiVersion": "v1",
			"kind":       "Service",
			"metadata":   metadata(req.App, labels),
			"spec": object{
				"selector": selector(),
				"ports": []any{object{
					"name": "http", "port": svc.Port, "targetPort": target, "protocol": "TCP",
				}},
			},
		})
	}
	objects = append(objects, object{
		"apiVersion": s.PodDisruptionBudgetAPIVersion,
		"kind":       "PodDisruptionBudget",
		"metadata":   metadata(req.App, labels),
		"spec":       object{"maxUnavailable": 1, "selector": object{"matchLabels": selector()}},
	})
	if a := spec.Autoscaling; a != nil {
		objects = append(objects, object{
			"apiVersion": s.AutoscalingAPIVersion,
			"kind":       "HorizontalPodAutoscaler",
			"metadata":   metadata(req.App, labels),
			"spec": object{
				"scaleTargetRef": object{"apiVersion": "apps/v1", "kind": "Deployment", "name": req.App},
				"minReplicas":    a.Min,
				"maxReplicas":    a.Max,
				"metrics": []any{object{
					"type": "Resource",
					"resource": object{
						"name":   "cpu",
						"target": object{"type": "Utilization", "averageUtilization": a.CPU},
					},
				}},
			},
		})
	}
	return objects, nil
}

// containerNames are the spec's container names in order, as the Rust BTreeMap iterates them.
func containerNames(spec *appSpec) []string {
	names := make([]string, 0, len(spec.Containers))
	for name := range spec.Containers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func firstPort(spec *appSpec) (uint16, bool) {
	for _, name := range containerNames(spec) {
		if ports := spec.Containers[name].Ports; len(ports) > 0 {
			return ports[0].Port, true
		}
	}
	return 0, false
}

func metadata(name string, labels map[string]string) object {
	return object{"name": name, "labels": labels}
}

func deployment(req *request, spec *appSpec, labels map[string]string, selector object) object {
	containers := []any{}
	for _, name := range containerNames(spec) {
		containers = append(containers, renderContainer(name, spec.Containers[name], req.Image))
	}
	deploymentSpec := object{
		"selector": object{"matchLabels": selector},
		"template": object{
			"metadata": object{"labels": labels},
			"spec":     object{"containers": containers},
		},
	}
	// With an autoscaler the replicas are its business: a fixed count would fight it.
	if spec.Autoscaling == nil {
		replicas := uint32(1)
		if spec.Replicas != nil {
			replicas = *spec.Replicas
		}
		deploymentSpec["replicas"] = replicas
	}
	return object{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   metadata(req.App, labels),
		"spec":       deploymentSpec,
	}
}

func renderContainer(name string, c container, image string) object {
	out := object{"name": name, "image": image}
	if len(c.Command) > 0 {
		out["command"] = c.Command
	}
	if len(c.Args) > 0 {
		out["args"] = c.Args
	}
	if len(c.Ports) > 0 {
		ports := []any{}
		for _, p := range c.Ports {
			ports = append(ports, object{"name": p.Name, "containerPort": p.Port, "protocol": *p.Protocol})
		}
		out["ports"] = ports
	}
	if len(c.Variables) > 0 {
		keys := make([]string, 0, len(c.Variables))
		for k := range c.Variables {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		env := []any{}
		for _, k := range keys {
			env = append(env, object{"name": k, "value": c.Variables[k]})
		}
		out["env"] = env
	}
	if c.Resources != nil {
		out["resources"] = c.Resources
	}
	if c.ReadinessProbe != nil {
		out["readinessProbe"] = object{
			"httpGet": object{"path": c.ReadinessProbe.HTTPGet.Path, "port": c.ReadinessProbe.HTTPGet.Port},
		}
	}
	return out
}
