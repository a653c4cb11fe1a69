//! `kubectl release init`: adopting an app that already runs, end to end — the exported
//! manifests are clean, deploy back as a no-op, and nothing is written when init refuses.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, EnvFromSource, EnvVar, EnvVarSource, SecretKeySelector, Service,
    ServicePort, ServiceSpec,
};
use kube::api::ObjectMeta;
use kubectl_release_tests::{App, apply, cronjob, deployment, statefulset};
use serde_json::Value;

/// The label the harness's workloads select their pods by.
const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The app as a team runs it before adopting the plugin: `web` (reading ConfigMap
/// `web-config` through `envFrom` and an optional Secret key), its `proxy` sidecar, a
/// StatefulSet `cache`, a CronJob `nightly`, a Service selecting web's pods, and a Service and
/// ConfigMap of someone else.
async fn create_live_app(app: &App, namespace: &str, image: &str) {
    let client = app.env.client("admin").await;
    let mut web: Deployment = deployment("web")
        .image(image)
        .container("proxy", "envoy:1.30")
        .replicas(2)
        .label("team", "payments")
        .build();
    let pod = web.spec.template.spec.as_mut().unwrap();
    pod.containers[0].env_from = Some(vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: "web-config".into(),
            optional: None,
        }),
        ..Default::default()
    }]);
    pod.containers[0].env = Some(vec![EnvVar {
        name: "DB_PASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "web-db".into(),
                key: "password".into(),
                optional: Some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    apply(&client, namespace, &config_map("web-config", "hello"))
        .await
        .expect("create configmap");
    apply(&client, namespace, &config_map("unrelated", "x"))
        .await
        .expect("create configmap");
    apply(&client, namespace, &web)
        .await
        .expect("create deployment");
    apply(&client, namespace, &service("web", "web"))
        .await
        .expect("create service");
    apply(&client, namespace, &service("other", "other"))
        .await
        .expect("create service");
    apply(
        &client,
        namespace,
        &statefulset("cache").image(image).replicas(1).build(),
    )
    .await
    .expect("create statefulset");
    apply(
        &client,
        namespace,
        &cronjob("nightly")
            .image(image)
            .schedule("0 3 * * *")
            .build(),
    )
    .await
    .expect("create cronjob");
}

fn config_map(name: &str, greeting: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("greeting".into(), greeting.into())])),
        ..Default::default()
    }
}

/// A Service on port 80 selecting the pods of workload `selects`; its port names its
/// protocol, as Kubernetes before 1.21 needs to server-side apply it.
fn service(name: &str, selects: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(NAME_LABEL.into(), selects.into())])),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Tags `to` in the app's repository with the very manifest of `from`, so both tags have one
/// digest: the image a commit made only of manifests would get from a reproducible build.
async fn retag(app: &mut App, from: &str, to: &str) {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    kubectl_release_tests::install_crypto_provider();
    let registry = app.env.registry().to_string();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.clone()]),
        ..Default::default()
    });
    let reference =
        |tag: &str| Reference::with_tag(registry.clone(), app.repository.clone(), tag.into());
    let (manifest, digest) = client
        .pull_manifest_raw(
            &reference(from),
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .expect("pull the manifest");
    client
        .push_manifest_raw(
            &reference(to),
            manifest,
            http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .expect("push the manifest under the new tag");
    app.digests.insert(to.to_string(), digest);
}

/// `init` for the app's qa namespace, writing into its repository.
async fn init(app: &App, extra: &[&str]) -> kubectl_release_tests::CmdOutput {
    let env = format!("qa={}@qa", app.qa.name());
    let dir = app.repo.path().display().to_string();
    let mut args = vec![
        "init", "--app", "web", "--image", &app.image, "--env", &env, "--dir", &dir,
    ];
    args.extend_from_slice(extra);
    app.release(&args).await
}

/// Every key anywhere in a document, for checking what must not be there.
fn keys(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                found.push(k.clone());
                keys(v, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, found)),
        _ => {}
    }
}

fn exported_files(repo: &Path) -> Vec<String> {
    let dir = repo.join("kubernetes/qa");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn init_exports_clean_manifests_that_deploy_as_a_noop() {
    let mut app = App::new("init-noop", 1).await;
    let before = app.commits()[0].clone();
    app.push(&before).await;
    let namespace = app.qa.name().to_string();
    create_live_app(&app, &namespace, &app.pinned(&before)).await;
    std::fs::remove_file(app.repo.path().join("release.yaml")).unwrap();

    let out = init(&app, &["-o", "json"]).await;
    assert!(out.success(), "{out}");
    let written: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(written["files"].as_array().unwrap().len(), 6, "{out}");
    let notes = written["notes"].to_string();
    assert!(notes.contains("web-db"), "the Secret is named: {out}");
    assert_eq!(
        exported_files(app.repo.path()),
        [
            "configmap-web-config.yaml",
            "cronjob-nightly.yaml",
            "deployment-web.yaml",
            "service-web.yaml",
            "statefulset-cache.yaml",
        ]
    );
    for file in exported_files(app.repo.path()) {
        let text =
            std::fs::read_to_string(app.repo.path().join("kubernetes/qa").join(&file)).unwrap();
        assert!(text.starts_with("# Exported by `kubectl release init` from namespace "));
        let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        let mut found = Vec::new();
        keys(&doc, &mut found);
        for banned in [
            "status",
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "namespace",
        ] {
            assert!(
                !found.iter().any(|k| k == banned),
                "{file} has `{banned}`:\n{text}"
            );
        }
    }
    let service =
        std::fs::read_to_string(app.repo.path().join("kubernetes/qa/service-web.yaml")).unwrap();
    assert!(service.contains("protocol: TCP"), "{service}");
    assert!(!service.contains("clusterIP"), "{service}");
    let config = std::fs::read_to_string(app.repo.path().join("release.yaml")).unwrap();
    assert!(config.contains("manifests: kubernetes/qa"), "{config}");

    // The adopted commit's image is the running one, byte for byte.
    let adopted = app.repo.commit("adopt");
    retag(&mut app, &before, &adopted).await;
    let out = app.release(&["deploy", "qa", "-o", "json"]).await;
    eprintln!("the first deploy of the adopted manifests:\n{out}");
    assert!(out.success(), "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let changed: Vec<&Value> = report["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["action"] != "unchanged")
        .collect();
    assert!(
        changed.is_empty(),
        "objects the deploy changed: {changed:#?}\n{out}"
    );
    assert_eq!(report["outcome"], "unchanged", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_refuses_to_overwrite_without_force() {
    let app = App::new("init-refuse", 1).await;
    let config_path = app.repo.path().join("release.yaml");
    let config = std::fs::read_to_string(&config_path).unwrap();

    let out = init(&app, &[]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("release.yaml"), "{out}");
    assert!(out.stderr.contains("--force"), "{out}");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), config);
    assert!(!app.repo.path().join("kubernetes").exists());

    // An environment's manifests are the team's as much as release.yaml is.
    std::fs::remove_file(&config_path).unwrap();
    app.repo.write("kubernetes/qa/web.yaml", "# ours\n");
    let out = init(&app, &[]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stderr.contains("kubernetes/qa"), "{out}");
    assert!(!config_path.exists());
    assert_eq!(exported_files(app.repo.path()), ["web.yaml"]);

    // --force exports over them.
    app.create_workloads(app.qa.name(), &format!("{}:v1", app.image))
        .await;
    let out = init(&app, &["--force"]).await;
    assert!(out.success(), "{out}");
    assert!(config_path.exists());
    assert!(
        exported_files(app.repo.path()).contains(&"deployment-web.yaml".to_string()),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn init_with_a_namespace_without_the_app_changes_nothing() {
    let app = App::new("init-empty", 1).await;
    let config_path = app.repo.path().join("release.yaml");
    std::fs::remove_file(&config_path).unwrap();
    // Something else runs there, of another image.
    app.create_workloads(app.qa.name(), "example.com/other/app:v1")
        .await;

    let out = init(&app, &[]).await;
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains(app.qa.name()),
        "names the namespace: {out}"
    );
    assert!(out.stderr.contains(&app.image), "names the image: {out}");
    assert!(!config_path.exists(), "{out}");
    assert!(!app.repo.path().join("kubernetes").exists(), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}
