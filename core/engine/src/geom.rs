//! A small 3D vector for game code ([`Vec3`]): positions of entities already in the game,
//! differences, lengths, distances and facing. GoWorld's `Vector3` (`entity.Vector3`) with the
//! same operations; `Ctx::distance_to` and `Ctx::face_to_entity` use it.

use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};

use oxworld_net::client_proto::Pos;

/// A point or direction in the game's space (y is height; AOI uses x and z).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    /// X.
    pub x: f32,
    /// Y (height).
    pub y: f32,
    /// Z.
    pub z: f32,
}

impl Vec3 {
    /// The zero vector.
    pub const ZERO: Vec3 = Vec3 { x: 0.0, y: 0.0, z: 0.0 };

    /// A vector from its parts.
    pub const fn new(x: f32, y: f32, z: f32) -> Vec3 {
        Vec3 { x, y, z }
    }

    /// Length.
    pub fn length(self) -> f32 {
        self.dot(self).sqrt()
    }

    /// Distance to `other` (3D, as GoWorld's `DistanceTo`).
    pub fn distance(self, other: Vec3) -> f32 {
        (other - self).length()
    }

    /// Distance to `other` on the x/z plane (how AOI measures).
    pub fn distance_xz(self, other: Vec3) -> f32 {
        let d = other - self;
        (d.x * d.x + d.z * d.z).sqrt()
    }

    /// Dot product.
    pub fn dot(self, other: Vec3) -> f32 {
        self.x * other.x + self.y * other.y + self.z * other.z
    }

    /// The same direction with length 1 (zero stays zero).
    pub fn normalized(self) -> Vec3 {
        let l = self.length();
        if l > 0.0 { self * (1.0 / l) } else { Vec3::ZERO }
    }

    /// The yaw (degrees, 0 faces +Z, 90 faces +X) that looks along this direction on the x/z
    /// plane; `None` for a vertical or zero direction.
    pub fn yaw(self) -> Option<f32> {
        (self.x != 0.0 || self.z != 0.0).then(|| self.x.atan2(self.z).to_degrees())
    }

    /// The unit direction a yaw (degrees) faces on the x/z plane.
    pub fn from_yaw(yaw: f32) -> Vec3 {
        let r = yaw.to_radians();
        Vec3 { x: r.sin(), y: 0.0, z: r.cos() }
    }
}

impl From<Pos> for Vec3 {
    fn from(p: Pos) -> Vec3 {
        Vec3 { x: p.x, y: p.y, z: p.z }
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        Vec3 { x: self.x + o.x, y: self.y + o.y, z: self.z + o.z }
    }
}

impl AddAssign for Vec3 {
    fn add_assign(&mut self, o: Vec3) {
        *self = *self + o;
    }
}

impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3 { x: self.x - o.x, y: self.y - o.y, z: self.z - o.z }
    }
}

impl SubAssign for Vec3 {
    fn sub_assign(&mut self, o: Vec3) {
        *self = *self - o;
    }
}

impl Mul<f32> for Vec3 {
    type Output = Vec3;
    fn mul(self, k: f32) -> Vec3 {
        Vec3 { x: self.x * k, y: self.y * k, z: self.z * k }
    }
}

impl Neg for Vec3 {
    type Output = Vec3;
    fn neg(self) -> Vec3 {
        Vec3 { x: -self.x, y: -self.y, z: -self.z }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_operations() {
        let a = Vec3::new(1.0, 2.0, 2.0);
        assert_eq!(a.length(), 3.0);
        assert_eq!(a + Vec3::new(1.0, 0.0, 0.0), Vec3::new(2.0, 2.0, 2.0));
        assert_eq!(a - a, Vec3::ZERO);
        assert_eq!(a * 2.0, Vec3::new(2.0, 4.0, 4.0));
        assert_eq!(-a, Vec3::new(-1.0, -2.0, -2.0));
        assert_eq!(Vec3::ZERO.distance(Vec3::new(3.0, 4.0, 0.0)), 5.0);
        assert_eq!(Vec3::ZERO.distance_xz(Vec3::new(3.0, 100.0, 4.0)), 5.0);
        assert!((a.normalized().length() - 1.0).abs() < 1e-6);
        assert_eq!(Vec3::ZERO.normalized(), Vec3::ZERO);
        assert_eq!(a.dot(Vec3::new(1.0, 1.0, 1.0)), 5.0);
        let mut b = a;
        b += a;
        b -= Vec3::new(2.0, 0.0, 0.0);
        assert_eq!(b, Vec3::new(0.0, 4.0, 4.0));
    }

    #[test]
    fn yaw_follows_the_protocol_convention() {
        assert_eq!(Vec3::new(0.0, 0.0, 1.0).yaw(), Some(0.0), "0 faces +Z");
        assert_eq!(Vec3::new(1.0, 0.0, 0.0).yaw(), Some(90.0), "90 faces +X");
        assert_eq!(Vec3::new(0.0, 5.0, 0.0).yaw(), None);
        let d = Vec3::from_yaw(90.0);
        assert!((d.x - 1.0).abs() < 1e-6 && d.z.abs() < 1e-6);
        assert_eq!(Vec3::from(Pos { x: 1.0, y: 2.0, z: 3.0, yaw: 45.0 }), Vec3::new(1.0, 2.0, 3.0));
    }
}
