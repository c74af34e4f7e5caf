//! The gRPC contract between milliwatt-signaling and milliwatt-media. The only crate in which
//! prost types live; the services convert at the edge.

pub mod media {
    pub mod v1 {
        tonic::include_proto!("milliwatt.media.v1");
        // serde::Serialize/Deserialize for every message and enum (pbjson, proto3 JSON mapping).
        include!(concat!(env!("OUT_DIR"), "/milliwatt.media.v1.serde.rs"));

        /// Encoded file descriptor set, for gRPC server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            tonic::include_file_descriptor_set!("milliwatt_media_v1_descriptor");
    }
}

pub use media::v1;

pub mod convert;
